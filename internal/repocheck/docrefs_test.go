package repocheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// link matches a Markdown link target: ](target) or ](target#anchor).
var link = regexp.MustCompile(`\]\(([^)\s#]*)(#[^)\s]*)?\)`)

// TestLinksResolveInsideTheRepository reads every .md file of the
// repository and fails for a link that is not a web address and does not
// name an existing file or directory inside the repository (relative to
// the file that holds it).
func TestLinksResolveInsideTheRepository(t *testing.T) {
	files, links := 0, 0
	root := repoRoot(t)
	walkRepo(t, root, ".md", func(path, rel string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			if filepath.IsAbs(target) {
				t.Errorf("%s: link %q is an absolute path", rel, target)
				continue
			}
			p := filepath.Join(filepath.Dir(path), filepath.FromSlash(target))
			if r, err := filepath.Rel(root, p); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s: link %q leaves the repository", rel, target)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: link %q names no file in the repository", rel, target)
			}
		}
		return nil
	})
	if files < 5 || links < 5 {
		t.Fatalf("read %d Markdown files with %d links under %s; expected the repository's docs", files, links, root)
	}
}
