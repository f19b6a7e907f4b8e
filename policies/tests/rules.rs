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

/// Issue 13: claims were strings only, so `request.auth.token.admin == true`
/// was silently false for a user whose token says `admin: true`.
#[test]
fn token_claims_keep_their_json_types() {
    let rule: RuleSpec = spec(
        r#"app: shop
rules:
  - match: /products/{id}
    allow:
      write: "request.auth.token.admin == true && request.auth.token.level >= 2 && 'eu' in request.auth.token.regions"
tests:
  - name: an admin writes
    request: {auth: {uid: ada, token: {admin: true, level: 3, regions: [eu, us]}}, method: update, path: /products/p1}
    expect: allow
  - name: the string "true" is not the bool true
    request: {auth: {uid: bob, token: {admin: "true", level: 3, regions: [eu]}}, method: update, path: /products/p1}
    expect: deny
  - name: a lower level is refused
    request: {auth: {uid: cy, token: {admin: true, level: 1, regions: [eu]}}, method: update, path: /products/p1}
    expect: deny
"#,
    );
    let admin = &rule.tests[0].request.auth.as_ref().unwrap().token["admin"];
    assert_eq!(admin, &serde_json::Value::Bool(true), "the claim stays a bool");
    let summary = RuleSet::compile(&rule).unwrap().run_tests(&rule.tests);
    assert_eq!(summary.failed, 0, "{:#?}", summary.results);
}

#[test]
fn a_condition_that_is_not_a_bool_is_refused_at_compile_time_with_its_rule() {
    let errors = RuleSet::compile(&spec(
        "app: notes\nrules:\n  - match: /notes/{id}\n    allow: {read: \"true\", write: \"1 + 1\"}\n",
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "rules[0] (/notes/{id}) allow.write: line 1, column 1: this is an int, not a bool: a condition must be true or false (compare it, e.g. `x == 1`)"
    );
}

#[test]
fn a_missing_claim_denies_and_says_which_field() {
    let set = RuleSet::compile(&spec(
        "app: shop\nrules:\n  - match: /products/{id}\n    allow: {write: \"request.auth.token.admin == true\"}\n",
    ))
    .unwrap();
    let auth = winky_crds::rule::TestAuth {
        uid: "bob".into(),
        token: [("email".to_string(), serde_json::json!("bob@example.com"))].into(),
    };
    let outcome = set.decide(&Request {
        auth: Some(&auth),
        method: Method::Update,
        path: "/products/p1",
        new_data: None,
        existing: None,
    });
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(
        outcome.reason,
        "/products/{id} allow.write failed: request.auth.token has no field 'admin' (it has: email); \
         test for it first with `'admin' in request.auth.token`"
    );
}
