//! Rule compilation errors and decisions.

use winky_crds::rule::{Decision, Method, RuleSpec};
use winky_policies::rules::{Request, RuleSet};

fn spec(yaml: &str) -> RuleSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn a_compile_error_names_the_rule_operation_line_and_column() {
    let errors = RuleSet::compile(&spec(
        "app: notes\nrules:\n  - match: /notes/{id}\n    allow: {read: \"true\"}\n  - match: /tags/{tag}\n    allow:\n      write: \"request.auth != null &&\"\n",
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.location, "rules[1] (/tags/{tag}) allow.write");
    assert_eq!(e.line, 1);
    assert!(e.column > 20, "{e}");
}

#[test]
fn a_typo_in_a_variable_is_caught_at_compile_time() {
    let errors = RuleSet::compile(&spec(
        "app: notes\nrules:\n  - match: /notes/{noteId}\n    allow: {read: \"noteid == 'x'\"}\n",
    ))
    .unwrap_err();
    assert!(errors[0].message.contains("'noteid'"), "{}", errors[0]);
    assert!(
        errors[0].message.contains("noteId"),
        "known variables are listed: {}",
        errors[0]
    );
}

#[test]
fn macros_may_bind_their_own_variables() {
    let set = RuleSet::compile(&spec(
        "app: notes\nrules:\n  - match: /notes/{noteId}\n    allow: {read: \"resource.data.readers.exists(r, r == request.auth.uid)\"}\n",
    ))
    .unwrap();
    let data = serde_json::json!({"readers": ["alice", "bob"]});
    let auth = winky_crds::rule::TestAuth {
        uid: "bob".into(),
        token: Default::default(),
    };
    let outcome = set.decide(&Request {
        auth: Some(&auth),
        method: Method::Get,
        path: "/notes/n1",
        new_data: None,
        existing: Some(&data),
    });
    assert_eq!(outcome.decision, Decision::Allow, "{}", outcome.reason);
}

#[test]
fn path_variables_are_visible_and_specific_operations_win_over_groups() {
    let set = RuleSet::compile(&spec(
        "app: notes\nrules:\n  - match: /users/{uid}/notes/{noteId}\n    allow:\n      read: \"request.auth != null && request.auth.uid == uid\"\n      list: \"false\"\n",
    ))
    .unwrap();
    let alice = winky_crds::rule::TestAuth {
        uid: "alice".into(),
        token: Default::default(),
    };
    let request = |method, path| Request {
        auth: Some(&alice),
        method,
        path,
        new_data: None,
        existing: None,
    };
    assert_eq!(
        set.decide(&request(Method::Get, "/users/alice/notes/n1"))
            .decision,
        Decision::Allow
    );
    assert_eq!(
        set.decide(&request(Method::Get, "/users/bob/notes/n1")).decision,
        Decision::Deny
    );
    assert_eq!(
        set.decide(&request(Method::List, "/users/alice/notes/n1"))
            .decision,
        Decision::Deny
    );
    let denied = set.decide(&request(Method::Delete, "/users/alice/notes/n1"));
    assert_eq!(denied.decision, Decision::Deny, "nothing allows delete");
    assert!(
        denied.reason.contains("no match allows delete"),
        "{}",
        denied.reason
    );
}

#[test]
fn an_evaluation_error_denies_and_says_why() {
    let set = RuleSet::compile(&spec(
        "app: notes\nrules:\n  - match: /notes/{id}\n    allow: {read: \"resource.data.owner == request.auth.uid\"}\n",
    ))
    .unwrap();
    let outcome = set.decide(&Request {
        auth: None,
        method: Method::Get,
        path: "/notes/n1",
        new_data: None,
        existing: None,
    });
    assert_eq!(outcome.decision, Decision::Deny);
    assert!(outcome.reason.contains("failed"), "{}", outcome.reason);
}

#[test]
fn a_failing_test_says_what_was_expected_and_keeps_the_rule_path_as_written() {
    let spec = spec(
        "app: notes\nrules:\n  - match: /notes/{noteId}\n    allow: {read: \"false\"}\ntests:\n  - {name: reads, request: {method: get, path: /notes/1}, expect: allow}\n",
    );
    let summary = RuleSet::compile(&spec).unwrap().run_tests(&spec.tests);
    let message = summary.results[0].message.clone().unwrap();
    assert!(message.starts_with("expected allow, got deny: "), "{message}");
    assert!(
        message.contains("/notes/{noteId} allow.read is false"),
        "{message}"
    );
}
