// Command tilt-record executes a Tiltfile with the go.starlark.net interpreter (the one Tilt
// embeds) and Tilt's dialect options, with recorder builtins in place of Tilt's API: each call is
// checked against Tilt's parameter names (docs.tilt.dev/api.html), so a misspelled keyword fails
// as it would under `tilt up`, and recorded. It prints what was recorded as JSON on stdout for
// tests/mesh/tiltfile.test.ts, which checks it against the rendered manifests and Dockerfiles.
//
//	go run tests/mesh/tilt/main.go -context kind-taskmesh -env TASKMESH_OVERLAY=drill Tiltfile
//
// Nothing is built, applied or run: local() answers from -local flags (substring=output) and
// fails on a command it was not told about; k8s_context() answers -context.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkjson"
	"go.starlark.net/starlarkstruct"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Recording is what the Tiltfile asked Tilt to do.
type Recording struct {
	VersionSettings map[string]interface{}   `json:"versionSettings,omitempty"`
	AllowedContexts []interface{}            `json:"allowedContexts"`
	DockerBuilds    []map[string]interface{} `json:"dockerBuilds"`
	K8sYaml         []interface{}            `json:"k8sYaml"`
	K8sResources    []map[string]interface{} `json:"k8sResources"`
	LocalResources  []map[string]interface{} `json:"localResources"`
	LocalCommands   []string                 `json:"localCommands"`
	Warnings        []string                 `json:"warnings"`
	ReadFiles       []string                 `json:"readFiles"`
	Failed          string                   `json:"failed,omitempty"`
	ExecError       string                   `json:"execError,omitempty"`
}

var (
	rec      = Recording{AllowedContexts: []interface{}{}, DockerBuilds: []map[string]interface{}{}, K8sYaml: []interface{}{}, K8sResources: []map[string]interface{}{}, LocalResources: []map[string]interface{}{}, LocalCommands: []string{}, Warnings: []string{}, ReadFiles: []string{}}
	baseDir  string
	env      = map[string]string{}
	locals   = map[string]string{}
	kContext string
)

// toGo turns a Starlark value into plain JSON-able Go values.
func toGo(v starlark.Value) interface{} {
	switch x := v.(type) {
	case starlark.NoneType:
		return nil
	case starlark.Bool:
		return bool(x)
	case starlark.Int:
		i, _ := x.Int64()
		return i
	case starlark.Float:
		return float64(x)
	case starlark.String:
		return string(x)
	case *starlark.List:
		out := []interface{}{}
		for i := 0; i < x.Len(); i++ {
			out = append(out, toGo(x.Index(i)))
		}
		return out
	case starlark.Tuple:
		out := []interface{}{}
		for _, e := range x {
			out = append(out, toGo(e))
		}
		return out
	case *starlark.Dict:
		out := map[string]interface{}{}
		for _, item := range x.Items() {
			k, ok := starlark.AsString(item[0])
			if !ok {
				k = item[0].String()
			}
			out[k] = toGo(item[1])
		}
		return out
	case *starlarkstruct.Struct:
		out := map[string]interface{}{}
		for _, name := range x.AttrNames() {
			a, _ := x.Attr(name)
			out[name] = toGo(a)
		}
		return out
	}
	return v.String()
}

// param is one Tilt parameter: "name" is required, "name?" optional (starlark.UnpackArgs syntax).
type param struct {
	name string
	def  starlark.Value
}

// record unpacks args against Tilt's parameter list and returns name → value (defaults filled in).
func record(fn string, args starlark.Tuple, kwargs []starlark.Tuple, params ...param) (map[string]interface{}, map[string]starlark.Value, error) {
	vals := make([]starlark.Value, len(params))
	pairs := []interface{}{}
	for i, p := range params {
		vals[i] = p.def
		pairs = append(pairs, p.name, &vals[i])
	}
	if err := starlark.UnpackArgs(fn, args, kwargs, pairs...); err != nil {
		return nil, nil, err
	}
	out := map[string]interface{}{}
	raw := map[string]starlark.Value{}
	for i, p := range params {
		n := strings.TrimSuffix(p.name, "?")
		if vals[i] == nil {
			vals[i] = starlark.None
		}
		out[n] = toGo(vals[i])
		raw[n] = vals[i]
	}
	return out, raw, nil
}

func req(n string) param { return param{n, nil} }
func opt(n string, d starlark.Value) param {
	return param{n + "?", d}
}

var (
	none  = starlark.None
	empty = starlark.String("")
)

func emptyList() starlark.Value { return starlark.NewList(nil) }

// builtin makes a recorder that checks Tilt's parameters and appends the call to `into`.
func builtin(name string, into func(map[string]interface{}) starlark.Value, params ...param) *starlark.Builtin {
	return starlark.NewBuiltin(name, func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		got, _, err := record(b.Name(), args, kwargs, params...)
		if err != nil {
			return nil, err
		}
		return into(got), nil
	})
}

// value returns the call's arguments as a struct tagged with its kind (live_update steps, port_forward, link).
func value(kind string) func(map[string]interface{}) starlark.Value {
	return func(got map[string]interface{}) starlark.Value {
		b, _ := json.Marshal(got)
		return starlarkstruct.FromStringDict(starlark.String(kind), starlark.StringDict{
			"kind": starlark.String(kind),
			"json": starlark.String(string(b)),
		})
	}
}

// unwrap turns the struct values above back into their recorded arguments.
func unwrap(v interface{}) interface{} {
	switch x := v.(type) {
	case []interface{}:
		out := []interface{}{}
		for _, e := range x {
			out = append(out, unwrap(e))
		}
		return out
	case map[string]interface{}:
		if s, ok := x["json"].(string); ok {
			var inner map[string]interface{}
			if json.Unmarshal([]byte(s), &inner) == nil {
				inner["kind"] = x["kind"]
				return inner
			}
		}
		out := map[string]interface{}{}
		for k, e := range x {
			out[k] = unwrap(e)
		}
		return out
	}
	return v
}

func path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(baseDir, p)
}

func predeclared() starlark.StringDict {
	list := emptyList
	return starlark.StringDict{
		"version_settings": builtin("version_settings", func(g map[string]interface{}) starlark.Value {
			rec.VersionSettings = g
			return none
		}, opt("check_updates", starlark.True), opt("constraint", empty)),
		"k8s_context": starlark.NewBuiltin("k8s_context", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
				return nil, err
			}
			return starlark.String(kContext), nil
		}),
		"allow_k8s_contexts": builtin("allow_k8s_contexts", func(g map[string]interface{}) starlark.Value {
			rec.AllowedContexts = append(rec.AllowedContexts, g["contexts"])
			return none
		}, req("contexts")),
		"fail": starlark.NewBuiltin("fail", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var msg string
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "msg", &msg); err != nil {
				return nil, err
			}
			rec.Failed = msg
			return nil, fmt.Errorf("fail: %s", msg)
		}),
		"warn": builtin("warn", func(g map[string]interface{}) starlark.Value {
			rec.Warnings = append(rec.Warnings, fmt.Sprint(g["msg"]))
			return none
		}, req("msg")),
		"local": starlark.NewBuiltin("local", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			got, _, err := record(b.Name(), args, kwargs, req("command"), opt("quiet", starlark.False), opt("command_bat", empty),
				opt("echo_off", starlark.False), opt("env", starlark.NewDict(0)), opt("dir", empty), opt("stdin", none))
			if err != nil {
				return nil, err
			}
			cmd := fmt.Sprint(got["command"])
			rec.LocalCommands = append(rec.LocalCommands, cmd)
			for sub, out := range locals {
				if strings.Contains(cmd, sub) {
					return starlark.String(out), nil
				}
			}
			return nil, fmt.Errorf("local(%q): the recorder was given no answer for this command (-local substring=output)", cmd)
		}),
		"read_json": starlark.NewBuiltin("read_json", func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p string
			var def starlark.Value = nil
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p, "default?", &def); err != nil {
				return nil, err
			}
			rec.ReadFiles = append(rec.ReadFiles, p)
			data, err := os.ReadFile(path(p))
			if err != nil {
				if def != nil {
					return def, nil
				}
				return nil, err
			}
			decode := starlarkjson.Module.Members["decode"]
			return starlark.Call(t, decode, starlark.Tuple{starlark.String(data)}, nil)
		}),
		"kustomize": builtin("kustomize", func(g map[string]interface{}) starlark.Value {
			return value("kustomize")(g)
		}, req("pathToDir"), opt("kustomize_bin", none), opt("flags", list())),
		"k8s_yaml": builtin("k8s_yaml", func(g map[string]interface{}) starlark.Value {
			rec.K8sYaml = append(rec.K8sYaml, g["yaml"])
			return none
		}, req("yaml"), opt("allow_duplicates", starlark.False)),
		"docker_build": builtin("docker_build", func(g map[string]interface{}) starlark.Value {
			rec.DockerBuilds = append(rec.DockerBuilds, g)
			return none
		}, req("ref"), req("context"), opt("build_args", starlark.NewDict(0)), opt("dockerfile", starlark.String("Dockerfile")),
			opt("dockerfile_contents", empty), opt("live_update", list()), opt("match_in_env_vars", starlark.False),
			opt("ignore", list()), opt("only", list()), opt("entrypoint", list()), opt("target", empty), opt("ssh", empty),
			opt("network", empty), opt("secret", empty), opt("extra_tag", empty), opt("container_args", none),
			opt("cache_from", list()), opt("pull", starlark.False), opt("platform", empty), opt("extra_hosts", list())),
		"k8s_resource": builtin("k8s_resource", func(g map[string]interface{}) starlark.Value {
			rec.K8sResources = append(rec.K8sResources, g)
			return none
		}, opt("workload", empty), opt("new_name", empty), opt("port_forwards", list()), opt("extra_pod_selectors", list()),
			opt("trigger_mode", starlark.MakeInt(0)), opt("resource_deps", list()), opt("objects", list()),
			opt("auto_init", starlark.True), opt("pod_readiness", empty), opt("links", list()), opt("labels", list()),
			opt("discovery_strategy", empty)),
		"local_resource": builtin("local_resource", func(g map[string]interface{}) starlark.Value {
			rec.LocalResources = append(rec.LocalResources, g)
			return none
		}, req("name"), opt("cmd", empty), opt("deps", list()), opt("trigger_mode", starlark.MakeInt(0)),
			opt("resource_deps", list()), opt("ignore", list()), opt("auto_init", starlark.True), opt("serve_cmd", empty),
			opt("cmd_bat", empty), opt("serve_cmd_bat", empty), opt("allow_parallel", starlark.False), opt("links", list()),
			opt("tags", list()), opt("env", starlark.NewDict(0)), opt("serve_env", starlark.NewDict(0)),
			opt("readiness_probe", none), opt("dir", empty), opt("serve_dir", empty), opt("labels", list())),
		"port_forward": builtin("port_forward", value("port_forward"),
			req("local_port"), opt("container_port", none), opt("name", empty), opt("link_path", empty), opt("host", empty)),
		"link":              builtin("link", value("link"), req("url"), opt("name", empty)),
		"sync":              builtin("sync", value("sync"), req("local_path"), req("remote_path")),
		"run":               builtin("run", value("run"), req("cmd"), opt("trigger", list()), opt("echo_off", starlark.False)),
		"fall_back_on":      builtin("fall_back_on", value("fall_back_on"), req("files")),
		"restart_container": builtin("restart_container", value("restart_container")),
		"os":                osModule(),
	}
}

func osModule() *starlarkstruct.Module {
	getenv := starlark.NewBuiltin("os.getenv", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var key string
		var def starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key, "default?", &def); err != nil {
			return nil, err
		}
		if v, ok := env[key]; ok {
			return starlark.String(v), nil
		}
		return def, nil
	})
	join := starlark.NewBuiltin("os.path.join", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		parts := []string{}
		for _, a := range args {
			s, ok := starlark.AsString(a)
			if !ok {
				return nil, fmt.Errorf("os.path.join: %s is not a string", a)
			}
			parts = append(parts, s)
		}
		return starlark.String(filepath.Join(parts...)), nil
	})
	exists := starlark.NewBuiltin("os.path.exists", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var p string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p); err != nil {
			return nil, err
		}
		_, err := os.Stat(path(p))
		return starlark.Bool(err == nil), nil
	})
	return &starlarkstruct.Module{Name: "os", Members: starlark.StringDict{
		"getenv": getenv,
		"path": &starlarkstruct.Module{Name: "os.path", Members: starlark.StringDict{
			"join": join, "exists": exists,
		}},
	}}
}

func main() {
	var envs, localAnswers multiFlag
	flag.StringVar(&kContext, "context", "kind-taskmesh", "what k8s_context() returns")
	flag.Var(&envs, "env", "KEY=VALUE seen by os.getenv (repeatable); nothing else of the environment is")
	flag.Var(&localAnswers, "local", "substring=output: local() of a command containing substring returns output (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tilt-record [-context ctx] [-env K=V]... [-local sub=out]... Tiltfile")
		os.Exit(2)
	}
	for _, e := range envs {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	for _, l := range localAnswers {
		k, v, _ := strings.Cut(l, "=")
		locals[k] = v
	}
	file, _ := filepath.Abs(flag.Arg(0))
	baseDir = filepath.Dir(file)
	// Tilt's dialect: top-level if/for, reassignment, while/recursion, sets, lambdas and nested defs.
	resolve.AllowGlobalReassign = true
	resolve.AllowRecursion = true
	resolve.AllowSet = true
	resolve.AllowLambda = true
	resolve.AllowNestedDef = true
	resolve.AllowFloat = true
	thread := &starlark.Thread{Name: "Tiltfile", Print: func(_ *starlark.Thread, msg string) { fmt.Fprintln(os.Stderr, msg) }}
	if _, err := starlark.ExecFile(thread, file, nil, predeclared()); err != nil {
		if ee, ok := err.(*starlark.EvalError); ok {
			rec.ExecError = ee.Backtrace()
		} else {
			rec.ExecError = err.Error()
		}
	}
	for _, d := range rec.DockerBuilds {
		d["live_update"] = unwrap(d["live_update"])
	}
	for _, r := range rec.K8sResources {
		r["port_forwards"] = unwrap(r["port_forwards"])
		r["links"] = unwrap(r["links"])
	}
	for _, r := range rec.LocalResources {
		r["links"] = unwrap(r["links"])
	}
	for i, y := range rec.K8sYaml {
		rec.K8sYaml[i] = unwrap(y)
	}
	sort.Strings(rec.Warnings)
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(rec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
