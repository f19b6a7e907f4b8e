// Winky corpus check: run gitleaks' own Go detector (RE2 semantics) over the
// corpus with a given config file (redact/rules.toml, or gitleaks' own
// config/gitleaks.toml restricted to the ids listed in an optional 4th file).
//
//	go run ./cmd/winkyverify CONFIG POSITIVES NEGATIVES [IDS_FILE]
//
// POSITIVES lines are RULE-ID<TAB>TEXT[<TAB>extra columns ignored]; a line
// counts as hit when a finding of RULE-ID is reported. NEGATIVES lines are
// TEXT; any finding is a false positive. In both, \n stands for a newline and
// \\ for a backslash. With PASSING_OUT=FILE the positive lines that hit are
// written to FILE (used to filter generated candidates).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
)

func decode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func lines(p string) []string {
	f, err := os.Open(p)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func main() {
	cfgPath, pos, neg := os.Args[1], os.Args[2], os.Args[3]
	only := map[string]bool{}
	if len(os.Args) > 4 {
		for _, id := range lines(os.Args[4]) {
			only[id] = true
		}
	}
	v := viper.New()
	v.SetConfigFile(cfgPath)
	v.SetConfigType("toml")
	if err := v.ReadInConfig(); err != nil {
		panic(err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		panic(err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		panic(err)
	}
	if len(only) > 0 {
		for id := range cfg.Rules {
			if !only[id] {
				delete(cfg.Rules, id)
			}
		}
		kw := map[string]struct{}{}
		for _, r := range cfg.Rules {
			for _, k := range r.Keywords {
				kw[strings.ToLower(k)] = struct{}{}
			}
		}
		cfg.Keywords = kw
	}
	d := detect.NewDetector(cfg)
	known := map[string]bool{}
	for id := range cfg.Rules {
		known[id] = true
	}
	n, hit, skipped := 0, 0, 0
	var passing []string
	for _, l := range lines(pos) {
		cols := strings.Split(l, "\t")
		id, raw := cols[0], cols[1]
		if !known[id] {
			skipped++
			continue
		}
		n++
		ok := false
		for _, f := range d.DetectString(decode(raw)) {
			if f.RuleID == id {
				ok = true
			}
		}
		if ok {
			hit++
			passing = append(passing, l)
		} else {
			fmt.Printf("GO POS MISS [%s] %s\n", id, raw)
		}
	}
	if p := os.Getenv("PASSING_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(strings.Join(passing, "\n")+"\n"), 0o644); err != nil {
			panic(err)
		}
	}
	m, fp := 0, 0
	for _, l := range lines(neg) {
		m++
		fs := d.DetectString(decode(l))
		if len(fs) > 0 {
			fp++
			for _, f := range fs {
				fmt.Printf("GO NEG FP [%s] secret=%q line=%s\n", f.RuleID, f.Secret, l)
			}
		}
	}
	fmt.Printf("go gitleaks detector with %s (%d rules): positives %d/%d hit (%d lines for rules not in this config), negatives %d/%d flagged\n", cfgPath, len(cfg.Rules), hit, n, skipped, fp, m)
}
