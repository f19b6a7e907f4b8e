// Winky overlay of gitleaks (MIT, Copyright (c) 2019 Zachary Rice) file
// cmd/generate/config/utils/validate.go: Validate and ValidateWithPaths also
// record every true positive and what the detector found in it (Records), so
// that cmd/winkydump can dump them. Everything else is unchanged.
//
// == WARNING ==
// These functions are used to generate GitLeak's default config.
// You are free to use these in your own project, HOWEVER, no API stability is guaranteed.

package utils

import (
	"strings"

	"github.com/zricethezav/gitleaks/v8/cmd/generate/config/base"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
)

// Record (Winky patch): every true positive and what the detector found in it.
type Record struct {
	RuleID   string   `json:"rule"`
	Sample   string   `json:"sample"`
	Matches  []string `json:"matches"`
	Secrets  []string `json:"secrets"`
	RuleHits []string `json:"rule_hits"`
	Run      int      `json:"run"`
}

var Records []Record

// Run is stamped on every Record (the dumper runs all generators twice).
var Run int

func Validate(rule config.Rule, truePositives []string, falsePositives []string) *config.Rule {
	r := &rule
	d := createSingleRuleDetector(r)
	for _, tp := range truePositives {
		fs := d.DetectString(tp)
		rec := Record{RuleID: r.RuleID, Sample: tp, Run: Run}
		for _, f := range fs {
			rec.Matches = append(rec.Matches, f.Match)
			rec.Secrets = append(rec.Secrets, f.Secret)
			rec.RuleHits = append(rec.RuleHits, f.RuleID)
		}
		Records = append(Records, rec)
		if len(fs) < 1 {
			logging.Fatal().
				Str("rule", r.RuleID).
				Str("value", tp).
				Str("regex", r.Regex.String()).
				Msg("Failed to Validate. True positive was not detected by regex.")
		}
	}
	for _, fp := range falsePositives {
		findings := d.DetectString(fp)
		if len(findings) != 0 {
			logging.Fatal().
				Str("rule", r.RuleID).
				Str("value", fp).
				Str("regex", r.Regex.String()).
				Msg("Failed to Validate. False positive was detected by regex.")
		}
	}
	return r
}

func ValidateWithPaths(rule config.Rule, truePositives map[string]string, falsePositives map[string]string) *config.Rule {
	r := &rule
	d := createSingleRuleDetector(r)
	for path, tp := range truePositives {
		f := detect.Fragment{Raw: tp, FilePath: path}
		fs := d.Detect(f)
		rec := Record{RuleID: r.RuleID, Sample: tp, Run: Run}
		for _, x := range fs {
			rec.Matches = append(rec.Matches, x.Match)
			rec.Secrets = append(rec.Secrets, x.Secret)
			rec.RuleHits = append(rec.RuleHits, x.RuleID)
		}
		Records = append(Records, rec)
		if len(fs) != 1 {
			logging.Fatal().
				Str("rule", r.RuleID).
				Str("value", tp).
				Str("regex", r.Regex.String()).
				Str("path", r.Path.String()).
				Msg("Failed to Validate. True positive was not detected by regex and/or path.")
		}
	}
	for path, fp := range falsePositives {
		f := detect.Fragment{Raw: fp, FilePath: path}
		if len(d.Detect(f)) != 0 {
			logging.Fatal().
				Str("rule", r.RuleID).
				Str("value", fp).
				Str("regex", r.Regex.String()).
				Str("path", r.Path.String()).
				Msg("Failed to Validate. False positive was detected by regex and/or path.")
		}
	}
	return r
}

func createSingleRuleDetector(r *config.Rule) *detect.Detector {
	// normalize keywords like in the config package
	var (
		uniqueKeywords = make(map[string]struct{})
		keywords       []string
	)
	for _, keyword := range r.Keywords {
		k := strings.ToLower(keyword)
		if _, ok := uniqueKeywords[k]; ok {
			continue
		}
		keywords = append(keywords, k)
		uniqueKeywords[k] = struct{}{}
	}
	r.Keywords = keywords

	rules := map[string]config.Rule{
		r.RuleID: *r,
	}
	cfg := base.CreateGlobalConfig()
	cfg.Rules = rules
	cfg.Keywords = uniqueKeywords
	for _, a := range cfg.Allowlists {
		if err := a.Validate(); err != nil {
			logging.Fatal().Err(err).Msg("invalid global allowlist")
		}
	}
	return detect.NewDetector(cfg)
}
