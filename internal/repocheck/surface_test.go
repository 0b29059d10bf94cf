package repocheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	pathpkg "path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is the module path of the repository.
const module = "github.com/moe-llm/moe"

// uncalled are the exported names that nothing outside tests uses, each
// with why it stays exported. Anything else exported without a non-test
// user fails TestEveryExportHasACaller: unexport it, or move it into the
// tests that use it.
var uncalled = map[string]string{
	"data.OpenShardMapped":             "zero-copy random access to a token shard; Prepare and the loader read with pread, which keeps the resident set small (docs/data.md)",
	"gguf.LoadModel":                   "ReadModel for library users that need a tokenizer; the CLI runs GGUF files in place (gguf.OpenModel)",
	"gguf.ParseType":                   "names a tensor type as llama.cpp spells it, for library users; the CLI takes types through ParseMix",
	"internal/peer.NeedBin":            "a test helper package: only tests import it (llama.cpp through MOE_LLAMA_CPP)",
	"internal/peer.Root":               "a test helper package: only tests import it (llama.cpp through MOE_LLAMA_CPP)",
	"internal/peer.Simple":             "a test helper package: only tests import it (llama.cpp through MOE_LLAMA_CPP)",
	"internal/testgguf.Open":           "a test helper package: only tests import it",
	"internal/testtok.Bytes":           "a test helper package: only tests import it",
	"internal/ref64.MatVec":            "float64 references for tests: only tests import the package",
	"internal/ref64.RMSNorm":           "float64 references for tests: only tests import the package",
	"internal/ref64.SiLU":              "float64 references for tests: only tests import the package",
	"internal/stattest.ChiSquareDense": "the sampling tests' chi-square: only tests import the package",
	"internal/stattest.Critical":       "the sampling tests' chi-square: only tests import the package",
	"tokenizer.LoadTiktoken":           "reads tiktoken's published rank files (cl100k_base), which the tests compare against tiktoken-go",
	"tokenizer.NewRanked":              "builds a rank-based tokenizer with a named pre-tokenizer, the form tiktoken vocabularies take",
	"tokenizer.Pieces":                 "the default pre-tokenizer's split, documented by an example",
	"tokenizer.PreTokenizers":          "lists the tokenizer.ggml.pre names moe knows",
	"tokenizer.Split":                  "the pieces a named pre-tokenizer makes, for inspection and benchmarks",
}

// uncalledMethods are the exported methods whose name no non-test file
// selects (x.Name), each with why it stays. Methods that standard-library
// interfaces call (interfaceMethods) need no entry.
var uncalledMethods = map[string]string{
	"data.Loader.PassTokens":           "the loader's progress API (docs/data.md)",
	"data.Shard.ReadTokens":            "random-access reads of a mapped shard, the reason OpenShardMapped exists",
	"tokenizer.Tokenizer.Detokenize":   "llama_detokenize's equivalent (special tokens, leading space), documented in docs/data.md",
	"tokenizer.Tokenizer.NumMergeable": "inspection of a loaded vocabulary; other packages' tests compare it",
	"model.Model.Logits":               "the training model's logits for library users; infer's train-equivalence test reads them",
	"infer.Model.ChatPrompt":           "the per-model form of infer.ChatPrompt for library users",
}

// interfaceMethods are method names that standard-library interfaces call
// (fmt.Stringer, error, http.Handler, json, sort, heap, io, flag.Value).
var interfaceMethods = map[string]bool{
	"String": true, "Error": true, "Unwrap": true, "Is": true, "Format": true, "ServeHTTP": true,
	"MarshalJSON": true, "UnmarshalJSON": true, "MarshalText": true, "UnmarshalText": true,
	"Len": true, "Less": true, "Swap": true, "Push": true, "Pop": true,
	"Read": true, "Write": true, "Close": true, "Set": true,
}

// pkgInfo is one package directory: its exported top-level names, its
// exported methods ("Type.Name") and the identifiers its non-test files use
// unqualified.
type pkgInfo struct {
	exported map[string]token.Position
	methods  map[string]token.Position
	local    map[string]bool
}

// TestEveryExportHasACaller parses every non-test Go file of the
// repository and fails for an exported package-level name that no non-test
// file uses (qualified from another package or unqualified in its own)
// unless uncalled lists it, and for an entry of uncalled that is used or no
// longer exists; then the same for exported methods (uncalledMethods).
func TestEveryExportHasACaller(t *testing.T) {
	fset := token.NewFileSet()
	pkgs := map[string]*pkgInfo{} // by import path relative to the module
	used := map[string]bool{}     // "rel.Name" used from another package
	selected := map[string]bool{} // names selected from values (x.Name): fields and methods
	root := repoRoot(t)
	walkRepo(t, root, ".go", func(path, rel string) error {
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir := pathpkg.Dir(rel)
		p := pkgs[dir]
		if p == nil {
			p = &pkgInfo{exported: map[string]token.Position{}, methods: map[string]token.Position{}, local: map[string]bool{}}
			pkgs[dir] = p
		}
		scan(fset, f, p, used, selected)
		return nil
	})
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages under %s", len(pkgs), root)
	}
	funcs := surface{what: "exported", list: "uncalled", allowed: uncalled,
		names: func(p *pkgInfo) map[string]token.Position { return p.exported },
		used: func(rel, name string, p *pkgInfo) (bool, bool) {
			ok := used[rel+"."+name] || p.local[name]
			return ok, ok
		}}
	funcs.check(t, root, pkgs)
	// Methods, by name: any type's x.Name counts, so this finds the methods
	// nothing can be calling.
	methods := surface{what: "exported method", list: "uncalledMethods", allowed: uncalledMethods,
		names: func(p *pkgInfo) map[string]token.Position { return p.methods },
		used: func(_, tm string, _ *pkgInfo) (bool, bool) {
			_, name, _ := strings.Cut(tm, ".")
			return selected[name] || interfaceMethods[name], selected[name]
		}}
	methods.check(t, root, pkgs)
}

// surface is one kind of exported name TestEveryExportHasACaller checks.
type surface struct {
	what, list string            // the names' kind and the allow-list's name, for messages
	allowed    map[string]string // "rel.name" → why it stays without a caller
	names      func(p *pkgInfo) map[string]token.Position
	// used reports whether name of package rel has a non-test caller, and
	// whether an allowed entry for it is then stale.
	used func(rel, name string, p *pkgInfo) (ok, stale bool)
}

// check fails for each name without a non-test caller that s.allowed does
// not list, and for each entry of s.allowed that has a caller or no longer
// exists. Commands (cmd/moe, the generator) export no API and are skipped.
func (s surface) check(t *testing.T, root string, pkgs map[string]*pkgInfo) {
	t.Helper()
	var missing []string
	for rel, p := range pkgs {
		if rel == "cmd/moe" || strings.HasSuffix(rel, "/internal/asmgen") {
			continue
		}
		for name, pos := range s.names(p) {
			key := rel + "." + name
			_, listed := s.allowed[key]
			if ok, stale := s.used(rel, name, p); ok {
				if listed && stale {
					t.Errorf("%s %s has a non-test caller now: remove it from %s", s.what, key, s.list)
				}
				continue
			}
			if !listed {
				missing = append(missing, key+" ("+strings.TrimPrefix(pos.String(), root+string(filepath.Separator))+")")
			}
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("%s %s has no non-test caller: unexport it, move it into its tests, or list why in %s", s.what, m, s.list)
	}
	for key := range s.allowed {
		i := strings.Index(key, ".")
		if p := pkgs[key[:i]]; p == nil || s.names(p)[key[i+1:]] == (token.Position{}) {
			t.Errorf("%s lists %s, which is not an %s any more", s.list, key, s.what)
		}
	}
}

// scan records f's exported top-level names and methods in p, the names f
// uses unqualified in p.local, the names it uses from the module's other
// packages in used (as "rel.Name") and the names it selects from values in
// selected.
func scan(fset *token.FileSet, f *ast.File, p *pkgInfo, used, selected map[string]bool) {
	decl := map[*ast.Ident]bool{} // declaring identifiers and field selectors: no uses
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && d.Name.IsExported() {
				p.exported[d.Name.Name] = fset.Position(d.Name.Pos())
				decl[d.Name] = true
			}
			if d.Recv != nil && d.Name.IsExported() && len(d.Recv.List) == 1 {
				if recv := recvType(d.Recv.List[0].Type); ast.IsExported(recv) {
					p.methods[recv+"."+d.Name.Name] = fset.Position(d.Name.Pos())
				}
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() {
						p.exported[s.Name.Name] = fset.Position(s.Name.Pos())
						decl[s.Name] = true
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() {
							p.exported[n.Name] = fset.Position(n.Pos())
							decl[n] = true
						}
					}
				}
			}
		}
	}
	imports := map[string]string{} // local name → module-relative path
	for _, im := range f.Imports {
		path, _ := strconv.Unquote(im.Path.Value)
		rest, ok := strings.CutPrefix(path, module+"/")
		if !ok {
			continue
		}
		name := rest[strings.LastIndex(rest, "/")+1:]
		if im.Name != nil {
			name = im.Name.Name
		}
		imports[name] = rest
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok {
				if dep, ok := imports[x.Name]; ok {
					used[dep+"."+n.Sel.Name] = true
					return false
				}
			}
			decl[n.Sel] = true // x.Name with x a value: a field or method
			selected[n.Sel.Name] = true
		case *ast.Ident:
			if !decl[n] {
				p.local[n.Name] = true
			}
		}
		return true
	})
}

// recvType is the type name of a method receiver (T, *T, T[P] or *T[P]).
func recvType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
