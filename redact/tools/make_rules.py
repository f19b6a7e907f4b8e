"""Write redact/rules.toml from gitleaks' config/gitleaks.toml.

    python3 make_rules.py GITLEAKS_MODULE_DIR VERSION OUT_TOML

Keeps the rules listed in SELECTED (gitleaks' TOML shape: id, description,
regex, secretGroup, entropy, keywords; allowlists and path dropped), applies
the ADJUSTED regex fixes, and appends Winky's own rules (WINKY). Normally run
through ../vendor.sh rules. See ../README.md.
"""
import tomllib, json, sys
GL = sys.argv[1]  # path to gitleaks module dir
VERSION = sys.argv[2]
OUT = sys.argv[3]
cfg = tomllib.load(open(f"{GL}/config/gitleaks.toml", "rb"))
by_id = {r["id"]: r for r in cfg["rules"]}

SELECTED = [
    # --- cloud providers ---
    "aws-access-token",
    "aws-amazon-bedrock-api-key-long-lived",
    "gcp-api-key",
    "azure-ad-client-secret",
    # --- GitHub ---
    "github-pat",
    "github-fine-grained-pat",
    "github-oauth",
    "github-app-token",
    "github-refresh-token",
    # --- GitLab ---
    "gitlab-pat",
    "gitlab-pat-routable",
    "gitlab-ptt",
    "gitlab-rrt",
    "gitlab-runner-authentication-token",
    "gitlab-runner-authentication-token-routable",
    "gitlab-cicd-job-token",
    "gitlab-deploy-token",
    "gitlab-feed-token",
    "gitlab-incoming-mail-token",
    "gitlab-kubernetes-agent-token",
    "gitlab-oauth-app-secret",
    "gitlab-scim-token",
    # --- Slack ---
    "slack-bot-token",
    "slack-user-token",
    "slack-app-token",
    "slack-webhook-url",
    "slack-legacy-token",
    "slack-legacy-bot-token",
    "slack-legacy-workspace-token",
    "slack-config-access-token",
    "slack-config-refresh-token",
    # --- keys and generic token formats ---
    "private-key",
    "jwt",
    # --- AI providers ---
    "openai-api-key",
    "anthropic-api-key",
    "anthropic-admin-api-key",
    "huggingface-access-token",
    "huggingface-organization-api-token",
    # --- payments / messaging / email ---
    "stripe-access-token",
    "twilio-api-key",
    "sendgrid-api-token",
    "mailgun-private-api-token",
    "mailgun-signing-key",
    "mailchimp-api-key",
    "discord-api-token",
    "telegram-bot-api-token",
    "microsoft-teams-webhook",
    # --- package registries ---
    "npm-access-token",
    "pypi-upload-token",
    # --- PaaS / infra ---
    "heroku-api-key",
    "heroku-api-key-v2",
    "digitalocean-pat",
    "digitalocean-access-token",
    "digitalocean-refresh-token",
    "shopify-access-token",
    "shopify-custom-access-token",
    "shopify-private-app-access-token",
    "shopify-shared-secret",
    "vault-service-token",
    "vault-batch-token",
    "hashicorp-tf-api-token",
    "databricks-api-token",
    "grafana-service-account-token",
    "grafana-cloud-api-token",
    "sentry-user-token",
    "doppler-api-token",
    "pulumi-api-token",
    "linear-api-key",
    # --- shell snippets ---
    "curl-auth-header",
    # --- catch-all (keep last among gitleaks rules) ---
    "generic-api-key",
]

WINKY = [
    {
        "id": "password-in-url",
        "description": "Winky rule: a password embedded in a URL's userinfo (scheme://user:password@host). Passwords starting with $, < or { (placeholders) are skipped.",
        "regex": r"""(?i)\b[a-z][a-z0-9+.-]{1,30}://[^\s:@/?#'"\x60]{1,128}:([^\s:@/?#'"\x60$<{][^\s:@/?#'"\x60]{0,255})@[a-z0-9\[][a-z0-9.:\[\]-]*""",
        "secretGroup": 1,
        "keywords": ["://"],
    },
    {
        "id": "password-assignment",
        "description": "Winky rule: a password assigned in config or prose (password: value, PASSWORD=value, pwd => 'value'). Unquoted values must contain a digit or one of !@#%^&*+?~ so that prose such as 'password: required' is not flagged; values starting with $, < or { (placeholders such as ${DB_PASSWORD} or <password>) are skipped.",
        "regex": r"""(?i)(?:passw(?:or)?d|pwd)[\w.-]{0,20}[ \t]*(?:=|:=|:|=>)[ \t]*(?:"([^"\s$<{][^"\s]{3,127})"|'([^'\s$<{][^'\s]{3,127})'|\x60([^\x60\s$<{][^\x60\s]{3,127})\x60|((?:[0-9!@#%^&*+?~][^\s"'\x60,;]{3,127}|[^\s"'\x60,;$<{][^\s"'\x60,;]{0,62}[0-9!@#%^&*+?~][^\s"'\x60,;]{0,64})))""",
        "entropy": 1.5,
        "keywords": ["passwd", "password", "pwd"],
    },
    {
        "id": "dockerhub-pat",
        "description": "Winky rule: a Docker Hub personal or organization access token (dckr_pat_ / dckr_oat_).",
        "regex": r"""\b(dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,64})(?:[\x60'"\s;]|\\[nr]|$)""",
        "entropy": 3,
        "keywords": ["dckr_pat_", "dckr_oat_"],
    },
]

# Rules whose regex must be adjusted so that regex::Regex::new accepts it with
# its default size limit. Go's RE2 \w is ASCII-only ([0-9A-Za-z_]); the Rust
# crate's \w is Unicode-aware, and inside large counted repetitions
# ({50,1000}, {138,300}, {10,150}) the Unicode class blows past the 10 MiB
# compiled-size limit. Spelling \w as the ASCII class it means in Go keeps
# gitleaks' semantics exactly and compiles.
ADJUST_ASCII_W = {"pypi-upload-token", "vault-batch-token", "generic-api-key"}

def ascii_w(rx):
    out, i, in_class = [], 0, False
    while i < len(rx):
        c = rx[i]
        if c == "\\" and i + 1 < len(rx):
            nxt = rx[i + 1]
            if nxt == "w":
                out.append("0-9A-Za-z_" if in_class else "[0-9A-Za-z_]")
            else:
                out.append(rx[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)

def tstr(s):
    # TOML basic string
    return json.dumps(s, ensure_ascii=False)

def lit(s):
    assert "'''" not in s, s
    return "'''" + s + "'''"

def emit(r, out):
    out.append("[[rules]]")
    out.append(f"id = {tstr(r['id'])}")
    out.append(f"description = {tstr(r['description'])}")
    out.append(f"regex = {lit(r['regex'])}")
    if "secretGroup" in r:
        out.append(f"secretGroup = {r['secretGroup']}")
    if "entropy" in r:
        e = r["entropy"]
        out.append(f"entropy = {e if isinstance(e, float) else e}")
    if r.get("keywords"):
        out.append("keywords = [" + ", ".join(tstr(k) for k in r["keywords"]) + "]")
    out.append("")

missing = [i for i in SELECTED if i not in by_id]
assert not missing, missing
dropped_fields = {}
out = []
out.append(f"""# Winky secret-redaction rules.
#
# The gitleaks rules below are copied verbatim (id, description, regex,
# secretGroup, entropy, keywords) from gitleaks' default configuration:
#   module:  github.com/zricethezav/gitleaks/v8@{VERSION}
#   file:    config/gitleaks.toml
# A focused subset was selected for user prompts; per-rule `allowlists` and
# `path` fields were dropped, as were the global allowlist and stopwords.
# Four regexes are marked ADJUSTED (see the comment above each): three spell
# Go's ASCII-only \\w as [0-9A-Za-z_] so that the Rust regex crate compiles
# them, one makes incidental capture groups non-capturing.
# See redact/README.md for provenance, selection and matching semantics,
# and redact/vendor.sh to re-download the module.
#
# The three rules at the end (password-in-url, password-assignment,
# dockerhub-pat) are Winky's own and are NOT part of gitleaks.
#
# gitleaks is distributed under the MIT License:
#
#   MIT License
#
#   Copyright (c) 2019 Zachary Rice
#
#   Permission is hereby granted, free of charge, to any person obtaining a copy
#   of this software and associated documentation files (the "Software"), to deal
#   in the Software without restriction, including without limitation the rights
#   to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
#   copies of the Software, and to permit persons to whom the Software is
#   furnished to do so, subject to the following conditions:
#
#   The above copyright notice and this permission notice shall be included in all
#   copies or substantial portions of the Software.
#
#   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
#   IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
#   FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
#   AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
#   LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
#   OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
#   SOFTWARE.

title = "winky redaction rules"
source = "github.com/zricethezav/gitleaks/v8@{VERSION}:config/gitleaks.toml"
""")
out.append(f"# ---------------------------------------------------------------------------")
out.append(f"# gitleaks rules ({len(SELECTED)}), from github.com/zricethezav/gitleaks/v8@{VERSION}")
out.append(f"# ---------------------------------------------------------------------------")
out.append("")
for i in SELECTED:
    r = by_id[i]
    extra = set(r) - {"id", "description", "regex", "secretGroup", "entropy", "keywords"}
    if extra:
        dropped_fields[i] = sorted(extra)
    if i in ADJUST_ASCII_W:
        r = dict(r)
        orig = r["regex"]
        r["regex"] = ascii_w(orig)
        assert r["regex"] != orig
        out.append("# ADJUSTED by Winky: every \\w spelled as the ASCII class [0-9A-Za-z_] it")
        out.append("# means in Go; the Rust crate's Unicode \\w exceeds regex's default size limit here.")
        out.append("# gitleaks original: " + orig)
    if i == "microsoft-teams-webhook":
        r = dict(r)
        orig = r["regex"]
        r["regex"] = orig.replace("([a-z0-9]{4}-){3}", "(?:[a-z0-9]{4}-){3}")
        assert r["regex"] != orig and "([" not in r["regex"]
        out.append("# ADJUSTED by Winky: the repeated ([a-z0-9]{4}-){3} groups made non-capturing.")
        out.append("# In gitleaks the secret of a rule with capture groups is the first non-empty")
        out.append("# group, which here is a 5-character UUID fragment; with no groups the secret")
        out.append("# is the whole webhook URL, which is what must be redacted.")
        out.append("# gitleaks original: " + orig)
    emit(r, out)
out.append("# ---------------------------------------------------------------------------")
out.append("# Winky's own rules (not from gitleaks)")
out.append("# ---------------------------------------------------------------------------")
out.append("")
for r in WINKY:
    emit(r, out)
open(OUT, "w").write("\n".join(out).rstrip("\n") + "\n")
print("rules:", len(SELECTED), "+", len(WINKY), file=sys.stderr)
print("dropped fields:", json.dumps(dropped_fields), file=sys.stderr)
