package archtest

import (
	"encoding/json"
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// public are the packages users import. Their exported API may name only
// types that users can name too: from a package outside any internal
// folder, or re-exported by an alias in a public package (broker.Fault).
var public = []string{"broker", "broker/brokertest", "dedupe", "idempotency", "webhook"}

// TestPublicAPINamesNoInternalType type-checks the public packages from the
// compiler's export data and walks every exported function, method, field,
// variable and constant: a type a user cannot name (logstore.FS,
// config.Config) in a signature makes the API unusable outside the module.
func TestPublicAPINamesNoInternalType(t *testing.T) {
	pkgs := loadPublic(t)
	if len(pkgs) < 4 {
		t.Fatalf("loaded only %d public packages", len(pkgs))
	}
	c := apiCheck{nameable: map[*types.TypeName]bool{}, report: func(where, what string) {
		t.Errorf("%s names %s, which users outside the module cannot name", where, what)
	}}
	// Aliases in public packages make the internal types they stand for
	// nameable.
	for _, p := range pkgs {
		for _, name := range p.Scope().Names() {
			if tn, ok := p.Scope().Lookup(name).(*types.TypeName); ok && tn.Exported() && tn.IsAlias() {
				if n, ok := types.Unalias(tn.Type()).(*types.Named); ok {
					c.nameable[n.Obj()] = true
				}
			}
		}
	}
	for _, p := range pkgs {
		c.checkPackage(p)
	}
}

// loadPublic returns the public packages that exist, read from the export
// data that go list -export writes (no type checking from source needed).
func loadPublic(t *testing.T) []*types.Package {
	t.Helper()
	var paths []string
	for _, p := range public {
		if _, err := os.Stat("../../" + p); err == nil {
			paths = append(paths, module+"/"+p)
		}
	}
	out, err := exec.Command("go", append([]string{"list", "-export", "-deps", "-json=ImportPath,Export"}, paths...)...).Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct{ ImportPath, Export string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		exports[p.ImportPath] = p.Export
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		if f := exports[path]; f != "" {
			return os.Open(f)
		}
		return nil, fmt.Errorf("no export data for %s", path)
	})
	var pkgs []*types.Package
	for _, path := range paths {
		p, err := imp.Import(path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// apiCheck walks the exported API of packages and reports each internal
// type that is not nameable.
type apiCheck struct {
	nameable map[*types.TypeName]bool
	report   func(where, what string)
}

func (c apiCheck) checkPackage(p *types.Package) {
	prefix := p.Name() + "."
	for _, name := range p.Scope().Names() {
		obj := p.Scope().Lookup(name)
		if !obj.Exported() {
			continue
		}
		where := prefix + name
		switch obj := obj.(type) {
		case *types.TypeName:
			t := types.Unalias(obj.Type())
			if obj.IsAlias() {
				if n, ok := t.(*types.Named); !ok || !isInternal(n.Obj().Pkg()) {
					continue // an alias of a public type is checked where it is declared
				}
			}
			c.checkDeclared(where, t)
		default: // *types.Func, *types.Var, *types.Const
			c.walk(where, obj.Type())
		}
	}
}

// checkDeclared checks what a declared (or re-exported) type shows users:
// its exported methods and fields, and the type it is defined as.
func (c apiCheck) checkDeclared(where string, t types.Type) {
	if !types.IsInterface(t) { // an interface's methods are its underlying type's
		ms := types.NewMethodSet(types.NewPointer(t)) // the value's methods and the pointer's
		for i := range ms.Len() {
			if m := ms.At(i).Obj(); m.Exported() {
				c.walk(where+"."+m.Name(), m.Type())
			}
		}
	}
	if n, ok := t.(*types.Named); ok {
		c.walk(where, n.Underlying())
	}
}

// walk reports the internal types that t names. It does not descend into
// named types: a public one is checked where it is declared, and another
// module's is not ours to judge.
func (c apiCheck) walk(where string, t types.Type) {
	switch t := t.(type) {
	case *types.Alias:
		if isInternal(t.Obj().Pkg()) {
			c.walk(where, types.Unalias(t))
		}
	case *types.Named:
		if isInternal(t.Obj().Pkg()) && !c.nameable[t.Obj()] {
			c.report(where, fmt.Sprintf("%s.%s (%s)", t.Obj().Pkg().Name(), t.Obj().Name(), t.Obj().Pkg().Path()))
		}
		for i := range t.TypeArgs().Len() {
			c.walk(where, t.TypeArgs().At(i))
		}
	case *types.Pointer:
		c.walk(where, t.Elem())
	case *types.Slice:
		c.walk(where, t.Elem())
	case *types.Array:
		c.walk(where, t.Elem())
	case *types.Chan:
		c.walk(where, t.Elem())
	case *types.Map:
		c.walk(where, t.Key())
		c.walk(where, t.Elem())
	case *types.Signature:
		c.walk(where, t.Params())
		c.walk(where, t.Results())
	case *types.Tuple:
		for i := range t.Len() {
			c.walk(where, t.At(i).Type())
		}
	case *types.Struct:
		for i := range t.NumFields() {
			if f := t.Field(i); f.Exported() {
				c.walk(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for i := range t.NumMethods() {
			if m := t.Method(i); m.Exported() {
				c.walk(where+"."+m.Name(), m.Type())
			}
		}
	case *types.TypeParam:
		c.walk(where, t.Constraint())
	case *types.Union:
		for i := range t.Len() {
			c.walk(where, t.Term(i).Type())
		}
	}
}

// isInternal reports whether p sits in an internal folder, which only its
// own module may import.
func isInternal(p *types.Package) bool {
	return p != nil && strings.Contains("/"+p.Path()+"/", "/internal/")
}
