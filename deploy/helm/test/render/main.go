// Command render renders a Helm 3 chart the way `helm template` does, for machines where Helm is
// not packaged: Go text/template + sprig, Helm's own functions (include, tpl, required, toYaml,
// fromYaml, toJson, fromJson, lookup), values from values.yaml coalesced with -f files, and
// .Release, .Chart, .Capabilities, .Template. It covers what the pushd chart uses, not all of Helm
// (no subcharts, no .Files, no hooks).
//
// Without -o it prints the manifests as YAML documents, like `helm template`. With -o FILE it
// writes one JSON object for the validator: {"values": <merged values>, "notes": <NOTES.txt>,
// "objects": [{"source": <template>, "object": <parsed document>}, ...]}.
//
// Build in GOPATH mode from Debian's golang-*-dev packages (no module download):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render ./render
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// apiVersions is .Capabilities.APIVersions; templates call .Has on it.
type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type kubeVersion struct {
	Version, Major, Minor, GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions apiVersions
}

func main() {
	chartDir := flag.String("chart", "", "chart directory (holds Chart.yaml)")
	var files valueFiles
	flag.Var(&files, "f", "values file merged over values.yaml (repeatable; later wins)")
	name := flag.String("name", "release", ".Release.Name")
	namespace := flag.String("namespace", "default", ".Release.Namespace")
	kube := flag.String("kube-version", "1.29.0", ".Capabilities.KubeVersion")
	out := flag.String("o", "", "write JSON for the validator here instead of YAML to stdout")
	flag.Parse()
	if *chartDir == "" {
		fmt.Fprintln(os.Stderr, "render: -chart is required")
		os.Exit(2)
	}
	if err := run(*chartDir, files, *name, *namespace, *kube, *out); err != nil {
		fmt.Fprintln(os.Stderr, "render: "+err.Error())
		os.Exit(1)
	}
}

func run(chartDir string, files []string, name, namespace, kube, out string) error {
	chart, err := readChart(chartDir)
	if err != nil {
		return err
	}
	values, err := readValues(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		override, err := readValues(f)
		if err != nil {
			return err
		}
		values = coalesce(override, values)
	}
	parts := strings.SplitN(strings.TrimPrefix(kube, "v"), ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("-kube-version %q is not MAJOR.MINOR.PATCH", kube)
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chart,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": capabilities{
			KubeVersion: kubeVersion{"v" + strings.TrimPrefix(kube, "v"), parts[0], parts[1], "v" + strings.TrimPrefix(kube, "v")},
			APIVersions: apiVersions{"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1"},
		},
		"Files": map[string]interface{}{},
	}

	chartName, _ := chart["Name"].(string)
	rendered, err := renderTemplates(chartDir, chartName, top)
	if err != nil {
		return err
	}

	var names []string
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	type object struct {
		Source string      `json:"source"`
		Object interface{} `json:"object"`
	}
	result := struct {
		Values  map[string]interface{} `json:"values"`
		Notes   string                 `json:"notes"`
		Objects []object               `json:"objects"`
	}{Values: values, Objects: []object{}}
	var manifests strings.Builder
	separator := regexp.MustCompile(`(?m)^---`)
	for _, n := range names {
		if strings.HasSuffix(n, "/NOTES.txt") {
			result.Notes = rendered[n]
			continue
		}
		for _, doc := range separator.Split(rendered[n], -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var obj interface{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return fmt.Errorf("%s: rendered YAML does not parse: %v\n%s", n, err, doc)
			}
			if obj == nil {
				continue // only comments
			}
			result.Objects = append(result.Objects, object{n, obj})
			fmt.Fprintf(&manifests, "---\n# Source: %s\n%s\n", n, strings.TrimSpace(doc))
		}
	}
	if out == "" {
		fmt.Print(manifests.String())
		return nil
	}
	data, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o644)
}

// readChart returns Chart.yaml with Helm's field names (.Chart.Name, .Chart.AppVersion, ...).
func readChart(dir string) (map[string]interface{}, error) {
	raw, err := readValues(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chart := map[string]interface{}{}
	for k, v := range raw {
		switch k {
		case "apiVersion":
			k = "APIVersion"
		default:
			k = strings.ToUpper(k[:1]) + k[1:]
		}
		chart[k] = v
	}
	for _, required := range []string{"APIVersion", "Name", "Version"} {
		if _, ok := chart[required]; !ok {
			return nil, fmt.Errorf("%s/Chart.yaml: missing %s", dir, required)
		}
	}
	return chart, nil
}

// readValues parses YAML as Helm does (through JSON, so numbers are float64).
func readValues(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	values := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return values, nil
}

// coalesce merges src over dst like Helm: maps merge key by key, anything else is replaced, and
// a null in src deletes the key.
func coalesce(src, dst map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if v == nil {
			delete(out, k)
			continue
		}
		srcMap, srcIsMap := v.(map[string]interface{})
		dstMap, dstIsMap := out[k].(map[string]interface{})
		if srcIsMap && dstIsMap {
			out[k] = coalesce(srcMap, dstMap)
		} else {
			out[k] = v
		}
	}
	return out
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// renderTemplates parses every file under templates/ into one set (so named templates from
// _helpers.tpl are shared) and executes each file not starting with "_".
func renderTemplates(chartDir, chartName string, top map[string]interface{}) (map[string]string, error) {
	root := template.New("")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	const maxIncludeDepth = 1000
	depth := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if depth[name]++; depth[name] > maxIncludeDepth {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		defer func() { depth[name]-- }()
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error calling tpl: %v", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(message string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(message)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(message)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	root.Funcs(funcs).Option("missingkey=zero")

	templatesDir := filepath.Join(chartDir, "templates")
	var names []string
	err := filepath.WalkDir(templatesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(templatesDir, p)
		name := path.Join(chartName, "templates", filepath.ToSlash(rel))
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := root.New(name).Parse(string(data)); err != nil {
			return err
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return nil, err
	}

	rendered := map[string]string{}
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return nil, err
		}
		rendered[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return rendered, nil
}
