#!/usr/bin/env python3
"""Extract the GitHub REST schemas and examples the Winky GitHub double needs.

Reads `generated/api.github.com.json` (OpenAPI 3.0) from the `@octokit/openapi`
npm package and writes, next to this file:

  openapi.json   per-operation request/response schemas as self-contained
                 JSON Schema (draft 2020-12): every `$ref` inlined, OpenAPI-only
                 keywords dropped, `nullable: true` turned into a `"null"` type.
  examples/*.json  one response example per operation and status, plus the
                 request example of each operation that takes a body.

Standard library only. Output is deterministic (sorted keys, two-space indent,
trailing newline), so running it twice gives byte-identical files.

Usage: extract.py --spec PATH/api.github.com.json --version 23.0.2 --out DIR
"""

import argparse
import copy
import json
import os
import sys

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SPEC_FILE = "generated/api.github.com.json"

# The operations the CLI and the operator (octocrab 0.54) call.
OPERATIONS = [
    # octocrab: repos(owner, repo).get()
    ("repos/get", "get", "/repos/{owner}/{repo}"),
    # octocrab: pulls(owner, repo).create(title, head, base).body(..).draft(..).send()
    ("pulls/create", "post", "/repos/{owner}/{repo}/pulls"),
    # octocrab: pulls(owner, repo).list().head("owner:branch").state(Open).send()
    ("pulls/list", "get", "/repos/{owner}/{repo}/pulls"),
    # The operator: which pull request brought a commit, whether a human merged
    # it, what it changed; commit statuses and comments written back.
    # octocrab: repos(owner, repo).list_pulls(sha).send()
    ("repos/list-pull-requests-associated-with-commit", "get",
     "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"),
    # octocrab: pulls(owner, repo).get(number)
    ("pulls/get", "get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    # octocrab: pulls(owner, repo).list_files(number)
    ("pulls/list-files", "get", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
    # octocrab: pulls(owner, repo).list_reviews(number).per_page(..).page(..).send()
    # (the approvals gate: approving reviews count, dismissed ones withdraw)
    ("pulls/list-reviews", "get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    # octocrab: repos(owner, repo).create_status(sha, state).context(..).send()
    ("repos/create-commit-status", "post", "/repos/{owner}/{repo}/statuses/{sha}"),
    # octocrab: issues(owner, repo).list_comments(number).send()
    ("issues/list-comments", "get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    # octocrab: issues(owner, repo).create_comment(number, body)
    ("issues/create-comment", "post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    # octocrab: issues(owner, repo).update_comment(id, body) (octocrab sends
    # POST, which GitHub accepts for every PATCH endpoint)
    ("issues/update-comment", "patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
]

# Error responses GitHub returns for every one of these operations although the
# description does not list them for it. Added from components/responses with
# the schema the description uses elsewhere; marked "undocumented" in the output.
ADDED_RESPONSES = {
    "401": "requires_authentication",  # bad or missing token
    "404": "not_found",  # repository missing or not visible to the token
}

# Error responses GitHub returns for one operation although the description
# does not list them for it; also marked "undocumented".
ADDED_OPERATION_RESPONSES = {
    # an unknown commit: 422 "No commit found for SHA: ..."
    "repos/list-pull-requests-associated-with-commit": {"422": "validation_failed"},
    # an unknown commit, or a state outside error/failure/pending/success
    "repos/create-commit-status": {"422": "validation_failed"},
}

# Keywords that are OpenAPI 3.0 only, or annotations that only cost bytes.
DROP_KEYWORDS = {"example", "examples", "discriminator", "xml", "externalDocs"}

# Keywords whose value is one schema, a list of schemas, or a map of schemas.
SCHEMA_ONE = {"items", "not", "additionalProperties", "additionalItems"}
SCHEMA_LIST = {"allOf", "anyOf", "oneOf"}
SCHEMA_MAP = {"properties", "patternProperties"}

# Error bodies: the description has no examples for basic-error or
# validation-error, so these are written here, after GitHub's actual responses
# (GitHub now also sends "status" as a string; both schemas allow extra keys).
DOCS = "https://docs.github.com/rest"
LOCAL_EXAMPLES = {
    ("repos/get", "301"): {
        "message": "Moved Permanently",
        "url": "https://api.github.com/repositories/1296269",
        "documentation_url": "https://docs.github.com/v3/#http-redirects",
    },
    ("repos/get", "401"): {
        "message": "Bad credentials",
        "documentation_url": DOCS,
        "status": "401",
    },
    ("repos/get", "403"): {
        "message": "Resource not accessible by integration",
        "documentation_url": DOCS + "/repos/repos#get-a-repository",
        "status": "403",
    },
    ("repos/get", "404"): {
        "message": "Not Found",
        "documentation_url": DOCS + "/repos/repos#get-a-repository",
        "status": "404",
    },
    ("pulls/create", "401"): {
        "message": "Bad credentials",
        "documentation_url": DOCS,
        "status": "401",
    },
    ("pulls/create", "403"): {
        "message": "Resource not accessible by integration",
        "documentation_url": DOCS + "/pulls/pulls#create-a-pull-request",
        "status": "403",
    },
    ("pulls/create", "404"): {
        "message": "Not Found",
        "documentation_url": DOCS + "/pulls/pulls#create-a-pull-request",
        "status": "404",
    },
    ("pulls/create", "422"): {
        "message": "Validation Failed",
        "errors": [
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": "A pull request already exists for octocat:new-feature.",
            }
        ],
        "documentation_url": DOCS + "/pulls/pulls#create-a-pull-request",
        "status": "422",
    },
    ("pulls/list", "401"): {
        "message": "Bad credentials",
        "documentation_url": DOCS,
        "status": "401",
    },
    ("pulls/list", "404"): {
        "message": "Not Found",
        "documentation_url": DOCS + "/pulls/pulls#list-pull-requests",
        "status": "404",
    },
    ("pulls/list", "422"): {
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "field": "state", "code": "invalid"}],
        "documentation_url": DOCS + "/pulls/pulls#list-pull-requests",
        "status": "422",
    },
}



def basic_error(message, docs, status):
    """A `basic-error` body as GitHub sends it (`docs` is the page under DOCS)."""
    return {"message": message, "documentation_url": DOCS + docs, "status": status}


def bad_credentials():
    return basic_error("Bad credentials", "", "401")


def unavailable(docs):
    """The `service_unavailable` body (no `status` in that schema, none sent)."""
    return {"code": "unavailable", "message": "Service unavailable", "documentation_url": DOCS + docs}


COMMIT_PULLS = "/commits/commits#list-pull-requests-associated-with-a-commit"
PULL_GET = "/pulls/pulls#get-a-pull-request"
PULL_FILES = "/pulls/pulls#list-pull-requests-files"
LIST_REVIEWS = "/pulls/reviews#list-reviews-for-a-pull-request"
COMMIT_STATUS = "/commits/statuses#create-a-commit-status"
LIST_COMMENTS = "/issues/comments#list-issue-comments"
CREATE_COMMENT = "/issues/comments#create-an-issue-comment"
UPDATE_COMMENT = "/issues/comments#update-an-issue-comment"
MISSING_BODY = [{"resource": "IssueComment", "code": "missing_field", "field": "body"}]

LOCAL_EXAMPLES.update({
    ("repos/list-pull-requests-associated-with-commit", "401"): bad_credentials(),
    ("repos/list-pull-requests-associated-with-commit", "404"): basic_error("Not Found", COMMIT_PULLS, "404"),
    ("repos/list-pull-requests-associated-with-commit", "409"): basic_error("Git Repository is empty.", COMMIT_PULLS, "409"),
    ("repos/list-pull-requests-associated-with-commit", "422"): basic_error(
        "No commit found for SHA: 6dcb09b5b57875f334f61aebed695e2e4193db5e", COMMIT_PULLS, "422"),
    ("pulls/get", "401"): bad_credentials(),
    ("pulls/get", "404"): basic_error("Not Found", PULL_GET, "404"),
    ("pulls/get", "406"): basic_error(
        "Sorry, the diff exceeded the maximum number of files (300). Consider using "
        "'List pull requests files' API or locally cloning the repository instead.", PULL_GET, "406"),
    ("pulls/get", "500"): basic_error("Server Error", PULL_GET, "500"),
    ("pulls/get", "503"): unavailable(PULL_GET),
    ("pulls/list-files", "401"): bad_credentials(),
    ("pulls/list-files", "404"): basic_error("Not Found", PULL_FILES, "404"),
    ("pulls/list-files", "422"): dict(
        basic_error("Sorry, this diff is taking too long to generate.", PULL_FILES, "422"),
        errors=[{"resource": "PullRequest", "field": "diff", "code": "not_available"}]),
    ("pulls/list-files", "500"): basic_error("Server Error", PULL_FILES, "500"),
    ("pulls/list-files", "503"): unavailable(PULL_FILES),
    ("pulls/list-reviews", "401"): bad_credentials(),
    ("pulls/list-reviews", "404"): basic_error("Not Found", LIST_REVIEWS, "404"),
    ("repos/create-commit-status", "401"): bad_credentials(),
    ("repos/create-commit-status", "404"): basic_error("Not Found", COMMIT_STATUS, "404"),
    ("repos/create-commit-status", "422"): dict(
        basic_error("Validation Failed", COMMIT_STATUS, "422"),
        errors=[{"resource": "Status", "field": "state", "code": "custom",
                 "message": "state is not included in the list"}]),
    ("issues/list-comments", "401"): bad_credentials(),
    ("issues/list-comments", "404"): basic_error("Not Found", LIST_COMMENTS, "404"),
    ("issues/list-comments", "410"): basic_error("Issues are disabled for this repo", LIST_COMMENTS, "410"),
    ("issues/create-comment", "401"): bad_credentials(),
    ("issues/create-comment", "403"): basic_error(
        "Unable to create comment because issue is locked.", CREATE_COMMENT, "403"),
    ("issues/create-comment", "404"): basic_error("Not Found", CREATE_COMMENT, "404"),
    ("issues/create-comment", "410"): basic_error("Issues are disabled for this repo", CREATE_COMMENT, "410"),
    ("issues/create-comment", "422"): dict(
        basic_error("Validation Failed", CREATE_COMMENT, "422"), errors=MISSING_BODY),
    ("issues/update-comment", "401"): bad_credentials(),
    ("issues/update-comment", "404"): basic_error("Not Found", UPDATE_COMMENT, "404"),
    ("issues/update-comment", "422"): dict(
        basic_error("Validation Failed", UPDATE_COMMENT, "422"), errors=MISSING_BODY),
})

# Minimal fixes to official examples that do not validate against the official
# schema: (example file, JSON pointer, value expected in the official example,
# replacement). A fix whose expected value is no longer there is reported and
# skipped, so a refresh notices when upstream has changed or fixed the example.
MISSING = object()  # "the key is absent" in EXAMPLE_FIXES
EXAMPLE_FIXES = [
    # full-repository (and repository, the schema of `source`) list `language`
    # (string or null) as required; the example has it only in `parent`.
    ("repos-get-200.json", "/language", MISSING, None),
    ("repos-get-200.json", "/source/language", MISSING, None),
    # team-simple and team (requested_teams items) require `type`
    # ("enterprise" | "organization"); the examples' team has none.
    ("pulls-create-201.json", "/requested_teams/0/type", MISSING, "organization"),
    ("pulls-list-200.json", "/0/requested_teams/0/type", MISSING, "organization"),
    ("pulls-get-200.json", "/requested_teams/0/type", MISSING, "organization"),
    ("repos-list-pull-requests-associated-with-commit-200.json", "/0/requested_teams/0/type",
     MISSING, "organization"),
]


def die(msg):
    print("extract.py: " + msg, file=sys.stderr)
    sys.exit(1)


def resolve(spec, ref):
    if not ref.startswith("#/"):
        die("external $ref not supported: " + ref)
    node = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(spec, node, stack=()):
    """Follow a `$ref` chain (siblings of `$ref` are ignored, as in OpenAPI 3.0)."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in stack:
            die("recursive $ref: " + " -> ".join(stack + (ref,)))
        stack = stack + (ref,)
        node = resolve(spec, ref)
    return node, stack


def convert(spec, schema, stack=()):
    """OpenAPI 3.0 schema object -> self-contained JSON Schema 2020-12."""
    if isinstance(schema, bool):
        return schema
    schema, stack = deref(spec, schema, stack)
    out = {}
    for key, value in schema.items():
        if key in DROP_KEYWORDS or key.startswith("x-") or key == "nullable":
            continue
        if key in SCHEMA_ONE:
            out[key] = convert(spec, value, stack)
        elif key in SCHEMA_LIST:
            out[key] = [convert(spec, v, stack) for v in value]
        elif key in SCHEMA_MAP:
            out[key] = {k: convert(spec, v, stack) for k, v in value.items()}
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value and bound in schema:
                out[key] = schema[bound]
            continue
        else:
            out[key] = copy.deepcopy(value)
    # OpenAPI 3.0 exclusive bounds: the number moved to exclusive*, drop the inclusive one.
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if schema.get(key) is True:
            out.pop(bound, None)
    if schema.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            if "null" not in types:
                types = types + ["null"]
            out["type"] = types
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def with_dialect(schema):
    return dict(schema, **{"$schema": DIALECT})


def json_schema(spec, media):
    if "schema" not in media:
        return None
    return with_dialect(convert(spec, media["schema"]))


def component_name(spec, schema):
    """Human label for the top-level schema: the component it refers to."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        return "array of " + schema["items"]["$ref"].rsplit("/", 1)[-1]
    return "inline"


def official_example(spec, media):
    examples = media.get("examples") or {}
    if not examples:
        if "example" in media:
            return copy.deepcopy(media["example"]), "inline example"
        return None, None
    name = "default" if "default" in examples else sorted(examples)[0]
    ex = examples[name]
    source = "inline example '%s'" % name
    if "$ref" in ex:
        source = ex["$ref"][2:]
        ex = resolve(spec, ex["$ref"])
    return copy.deepcopy(ex["value"]), source


def json_pointer_get(doc, pointer):
    node = doc
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def json_pointer_set(doc, pointer, value):
    parts = pointer.split("/")[1:]
    parent = json_pointer_get(doc, "/".join([""] + parts[:-1])) if len(parts) > 1 else doc
    last = parts[-1].replace("~1", "/").replace("~0", "~")
    if isinstance(parent, list):
        parent[int(last)] = value
    else:
        parent[last] = value


def apply_fixes(name, example, report):
    """Apply EXAMPLE_FIXES to one example; return descriptions of those applied."""
    applied = []
    for fname, pointer, expected, replacement in EXAMPLE_FIXES:
        if fname != name:
            continue
        try:
            current = json_pointer_get(example, pointer)
        except (KeyError, IndexError, ValueError):
            current = MISSING
        if current != expected:
            report.append(
                "%s %s: expected %s in the official example, found %s: fix skipped"
                % (name, pointer, json.dumps(expected),
                   "nothing" if current is MISSING else json.dumps(current))
            )
            continue
        json_pointer_set(example, pointer, replacement)
        applied.append("%s: %s -> %s" % (
            pointer, "absent" if expected is MISSING else json.dumps(expected), json.dumps(replacement)))
    return applied


def dump(obj):
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path, obj):
    data = dump(obj).encode("utf-8")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True, help="path to generated/api.github.com.json")
    ap.add_argument("--version", required=True, help="@octokit/openapi version")
    ap.add_argument("--out", required=True, help="output directory (e2e/github)")
    args = ap.parse_args()

    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    if spec.get("info", {}).get("version") != args.version:
        die("spec info.version %r != %r" % (spec.get("info", {}).get("version"), args.version))

    operations = {}
    examples = {}  # file name -> (example, source)
    for op_id, method, path in OPERATIONS:
        op = spec["paths"][path][method]
        if op.get("operationId") != op_id:
            die("%s %s is %r, not %r" % (method, path, op.get("operationId"), op_id))
        prefix = op_id.replace("/", "-")
        entry = {
            "method": method.upper(),
            "path": path,
            "summary": op.get("summary"),
            "documentation_url": op.get("externalDocs", {}).get("url"),
            "parameters": {},
            "responses": {},
            "components": {},
            "undocumented": [],
            "no_body": [],
        }
        for param in op.get("parameters", []):
            param, _ = deref(spec, param)
            p = {"in": param["in"], "required": bool(param.get("required", False))}
            if "schema" in param:
                p["schema"] = with_dialect(convert(spec, param["schema"]))
            entry["parameters"][param["name"]] = p

        body = op.get("requestBody")
        if body is not None:
            body, _ = deref(spec, body)
            media = body["content"]["application/json"]
            entry["request"] = json_schema(spec, media)
            entry["request_required"] = bool(body.get("required", False))
            entry["components"]["request"] = component_name(spec, media["schema"])
            ex, source = official_example(spec, media)
            if ex is not None:
                examples[prefix + "-request.json"] = (ex, source)

        responses = dict(op.get("responses", {}))
        added = dict(ADDED_RESPONSES, **ADDED_OPERATION_RESPONSES.get(op_id, {}))
        for status, comp in sorted(added.items()):
            if status not in responses:
                responses[status] = {"$ref": "#/components/responses/" + comp}
                entry["undocumented"].append(status)
        for status in sorted(responses):
            resp, _ = deref(spec, responses[status])
            media = resp.get("content", {}).get("application/json")
            if media is None or "schema" not in media:
                entry["no_body"].append(status)
                continue
            entry["responses"][status] = json_schema(spec, media)
            entry["components"][status] = component_name(spec, media["schema"])
            fname = "%s-%s.json" % (prefix, status)
            ex, source = official_example(spec, media)
            if ex is not None:
                examples[fname] = (ex, source)
            elif (op_id, status) in LOCAL_EXAMPLES:
                examples[fname] = (copy.deepcopy(LOCAL_EXAMPLES[(op_id, status)]), "local")
            else:
                die("no example for %s %s: add one to LOCAL_EXAMPLES" % (op_id, status))
        operations[op_id] = entry

    report = []
    sources = {}
    for fname, (ex, source) in sorted(examples.items()):
        sources[fname] = {"source": source}
        fixes = apply_fixes(fname, ex, report)
        if fixes:
            sources[fname]["fixes"] = fixes

    doc = {
        "$comment": "Generated by e2e/github/vendor.sh from @octokit/openapi; do not edit.",
        "dialect": DIALECT,
        "source": {
            "package": "@octokit/openapi",
            "version": args.version,
            "file": SPEC_FILE,
            "openapi": spec.get("openapi"),
            "api_version": "2022-11-28 (default; x-github-breaking-changes for later versions ignored)",
        },
        "examples": sources,
        "operations": operations,
    }

    out_dir = os.path.abspath(args.out)
    ex_dir = os.path.join(out_dir, "examples")
    os.makedirs(ex_dir, exist_ok=True)
    write(os.path.join(out_dir, "openapi.json"), doc)
    wanted = set(examples)
    for name in sorted(os.listdir(ex_dir)):
        if name.endswith(".json") and name not in wanted:
            os.remove(os.path.join(ex_dir, name))
    for fname, (ex, _) in sorted(examples.items()):
        write(os.path.join(ex_dir, fname), ex)

    for line in report:
        print("extract.py: warning: " + line, file=sys.stderr)
    print("extract.py: %d operations, %d examples" % (len(operations), len(examples)))


if __name__ == "__main__":
    main()
