"""Build redact/tests/corpus/positives.txt from gitleaks' own rule-generator
true positives. Driven by ../vendor.sh corpus; see ../README.md.

  dumpmain GITLEAKS_MAIN_GO OUT_GO
      write cmd/winkydump/main.go: it calls every rule generator listed in
      gitleaks' cmd/generate/config/main.go twice (run 1 and run 2, with the
      seeded overlay of secrets.NewSecret) and prints the recorded true
      positives and detector findings as JSON.
  cand TPS_JSON RULES_TOML OUT
      every candidate line: RULE-ID TAB TEXT TAB KIND TAB SECRET-INDEX
  select PASSING OUT
      from the candidate lines that the detector accepted, keep a
      deterministic, varied subset (<= 3 per rule) and append Winky's own
      hand-written samples for its own rules.
"""
import json, random, re, sys, tomllib

BARE = [
    "A notes app with email login; deploy it with key {s} please",
    "Build a small todo API and use {s} for the integration",
    "E-commerce prototype with cart and checkout. The token {s} is for the payment sandbox",
    "Here is the credential for staging: {s} - wire it into the config",
    "Chat app with rooms; the bot should authenticate with {s} when it starts",
    "Fix the failing release job, it publishes using {s}",
    "Add a settings page that stores {s} in the vault instead of the repo",
    "Why does my webhook fail? I call it with {s} from the server",
    "Recipe sharing site with photos, the credentials {s} are in my notes",
    "Make the CLI read the key from an env var instead of hardcoding {s} in main.go",
]
CONF = [
    "Add a settings page. My current config has {t} and it should move to a secret",
    "Blog engine with comments; the .env contains {t} so read it at startup",
    "Use this snippet from my app: {t} and build a dashboard around it",
    "Migrate this line to Kubernetes secrets please: {t}",
    "Inventory tracker for a small shop. Existing code: {t} keep it working",
    "Why does this not work? {t}",
]
PEM = [
    "Set up SSH deploys for the notes app, here is the key:\n{p}\nthanks!",
    "Store this signing key in a Kubernetes secret for the shop backend:\n{p}",
    "Our CI signs releases with this key, please add a verify step:\n{p}",
]

def esc(text):
    assert "\t" not in text and "\\" not in text and "\r" not in text, repr(text)
    return text.replace("\n", "\\n")

def ok_sample(s):
    return "\n" not in s and "\\" not in s and "\t" not in s and len(s) < 420

def candidates(tps, rules_path, out_path):
    records = json.load(open(tps))
    ids = [r["id"] for r in tomllib.load(open(rules_path, "rb"))["rules"]]
    out = []
    bi = ci = 0
    for rid in ids:
        recs = [r for r in records if r["rule"] == rid]
        by_secret = {}
        for r in recs:
            by_secret.setdefault(r["secrets"][0], []).append(r)
        # run 1 secrets first, then run 2 (dump order), at most 6 distinct
        secrets = sorted(by_secret, key=lambda s: (by_secret[s][0]["run"], recs.index(by_secret[s][0])))[:6]
        for k, sec in enumerate(secrets):
            samples = [r["sample"] for r in by_secret[sec]]
            if rid == "private-key":
                out.append((rid, PEM[k % len(PEM)].format(p=samples[0].strip("\n")), "pem", k))
                continue
            if ok_sample(sec):
                out.append((rid, BARE[bi % len(BARE)].format(s=sec), "bare", k))
                bi += 1
            singles = sorted({s.strip() for s in samples if ok_sample(s.strip())})
            for j in range(min(2, len(singles))):
                t = singles[(k * 7 + j * 11 + len(rid)) % len(singles)]
                out.append((rid, CONF[ci % len(CONF)].format(t=t), "conf", k))
                ci += 1
    with open(out_path, "w") as f:
        for rid, text, kind, k in out:
            f.write(f"{rid}\t{esc(text)}\t{kind}\t{k}\n")
    print(len(out), "candidates", file=sys.stderr)

def winky_samples():
    rnd = random.Random(20240611)
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    def tok(n, extra=""):
        return "".join(rnd.choice(alnum + extra) for _ in range(n))
    pat1, pat2, pat3 = tok(27, "_-"), tok(27, "_-"), tok(32, "_-")
    return [
        ("password-in-url", "Connect the notes app to postgres://notes_admin:Xk29vLq7pTz@db.internal:5432/notes and add migrations"),
        ("password-in-url", "My Redis is at redis://default:s3cr3tRedisPw@cache.example.com:6379 so use it for sessions"),
        ("password-in-url", "Clone https://deploybot:Gl4ssw0rd2024@git.example.org/team/shop.git and build the storefront"),
        ("password-in-url", "Chat app with rooms; the queue is amqp://rabbit:Hunter2Rabbit!@mq.local:5672/ for push notifications"),
        ("password-in-url", "Use mongodb+srv://appuser:Zq8Wm3Tn5Lp@cluster0.ab1cd.mongodb.net/chat as the message store"),
        ("password-assignment", "Seed an admin user with password: Sup3rS3cret! for the demo"),
        ("password-assignment", "The database config is DB_PASSWORD=hunter2 and DB_USER=app, please add a health check"),
        ("password-assignment", "In settings.py set ADMIN_PASSWORD = \"correct-horse-battery\" and add a login page"),
        ("password-assignment", "Log in to staging as admin with pwd=Tr0ub4dor&3 and check the checkout flow"),
        ("password-assignment", "E-commerce admin panel; mysql password => 'qwerty123' so rotate it after the demo"),
        ("dockerhub-pat", f"Push the images to Docker Hub with dckr_pat_{pat1} from CI"),
        ("dockerhub-pat", f"Run docker login -u winkybot -p dckr_pat_{pat2} and then push the chat image"),
        ("dockerhub-pat", f"The org token dckr_oat_{pat3} should go into the registry pull secret"),
    ]

def select(passing_path, out_path):
    by_rule = {}
    for line in open(passing_path):
        line = line.rstrip("\n")
        if not line:
            continue
        rid, text, kind, k = line.split("\t")
        by_rule.setdefault(rid, []).append((text, kind, int(k)))
    final = []
    for rid, cands in by_rule.items():
        picked, used_secrets, used_kinds = [], set(), []
        # round 1: distinct secrets, alternating kinds; round 2: fill up to 3
        want = ["bare", "conf", "bare", "conf", "pem", "pem", "pem"]
        for kind in want:
            for c in cands:
                if c in picked or c[1] != kind or c[2] in used_secrets:
                    continue
                picked.append(c); used_secrets.add(c[2]); break
            if len(picked) == 3:
                break
        for c in cands:
            if len(picked) >= 3:
                break
            if c not in picked:
                picked.append(c)
        final += [(rid, c[0]) for c in picked]
    final += [(rid, esc(t)) for rid, t in winky_samples()]
    with open(out_path, "w") as f:
        for rid, text in final:
            f.write(f"{rid}\t{text}\n")
    print(len(final), "selected", file=sys.stderr)

DUMP_HEAD = """// Code generated by redact/tools/make_corpus.py dumpmain; DO NOT EDIT.
// Winky corpus dump: runs every gitleaks rule generator twice (with the seeded
// overlay of secrets.NewSecret) and prints the recorded true positives and
// what the detector found in them as JSON.
package main

import (
	"encoding/json"
	"os"
	"sort"

	"github.com/zricethezav/gitleaks/v8/cmd/generate/config/rules"
	"github.com/zricethezav/gitleaks/v8/cmd/generate/config/utils"
	"github.com/zricethezav/gitleaks/v8/config"
)

func all() []*config.Rule {
	return []*config.Rule{
"""

DUMP_TAIL = """}

func main() {
	for run := 1; run <= 2; run++ {
		utils.Run = run
		_ = all()
	}
	recs := utils.Records
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Run != recs[j].Run {
			return recs[i].Run < recs[j].Run
		}
		if recs[i].RuleID != recs[j].RuleID {
			return recs[i].RuleID < recs[j].RuleID
		}
		return recs[i].Sample < recs[j].Sample
	})
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	_ = enc.Encode(recs)
}
"""

def dumpmain(src, out):
    text = open(src).read()
    m = re.search(r"configRules := \[\]\*config\.Rule\{\n(.*?)\n\t\}\n", text, re.S)
    assert m, "rule list not found in " + src
    body = m.group(1)
    assert "rules." in body
    open(out, "w").write(DUMP_HEAD + body + "\n\t}\n" + DUMP_TAIL)

if __name__ == "__main__":
    if sys.argv[1] == "dumpmain":
        dumpmain(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "cand":
        candidates(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        select(sys.argv[2], sys.argv[3])
