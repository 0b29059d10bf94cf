package chattmpl

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moe-llm/moe/internal/atomicfile"
)

// ConfigFileName is the Hugging Face file that carries a model's chat
// template.
const ConfigFileName = "tokenizer_config.json"

// FromTokenizerConfig reads the chat template of a Hugging Face
// tokenizer_config.json (data; name says where it came from): chat_template
// is a string, or a list of {"name", "template"} of which "default" is the
// one used for chat. bos_token and eos_token (strings or added-token
// objects with a content field) fill opt.BOS and opt.EOS when those are
// empty. It returns nil and no error when the file has no template.
func FromTokenizerConfig(name string, data []byte, opt Options) (*Template, error) {
	var doc struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.ChatTemplate) == 0 || string(doc.ChatTemplate) == "null" {
		return nil, nil
	}
	var src string
	if err := json.Unmarshal(doc.ChatTemplate, &src); err != nil {
		var named []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(doc.ChatTemplate, &named); err != nil {
			return nil, fmt.Errorf("%s: chat_template must be a string or a list of {name, template}", name)
		}
		found := false
		for _, n := range named {
			if n.Name == "default" {
				src, found = n.Template, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: chat_template lists %d templates but none named \"default\"", name, len(named))
		}
		name += ` chat_template "default"`
	} else {
		name += " chat_template"
	}
	var err error
	if opt.BOS == "" {
		if opt.BOS, err = tokenString(doc.BOS); err != nil {
			return nil, fmt.Errorf("%s: bos_token: %w", name, err)
		}
	}
	if opt.EOS == "" {
		if opt.EOS, err = tokenString(doc.EOS); err != nil {
			return nil, fmt.Errorf("%s: eos_token: %w", name, err)
		}
	}
	return Parse(name, src, opt)
}

// tokenString reads a special token field: null, a string, or an added
// token object {"content": ...}.
func tokenString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", fmt.Errorf("must be a string or an object with a content string")
	}
	return *obj.Content, nil
}

// SaveConfig writes t into dir as a tokenizer_config.json (chat_template,
// and bos_token/eos_token when set) that FromTokenizerConfig reads back:
// how a run directory keeps the chat template of the model it came from.
func SaveConfig(dir string, t *Template) error {
	doc := map[string]any{}
	if t.opt.BOS != "" {
		doc["bos_token"] = t.opt.BOS
	}
	if t.opt.EOS != "" {
		doc["eos_token"] = t.opt.EOS
	}
	return saveConfig(dir, doc, t)
}

// SetConfigTemplate sets the chat template in dir's existing
// tokenizer_config.json, keeping its other fields (its bos and eos tokens
// name the tokenizer's own).
func SetConfigTemplate(dir string, t *Template) error {
	path := filepath.Join(dir, ConfigFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("chat template: %w", err)
	}
	doc := map[string]any{}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return saveConfig(dir, doc, t)
}

// saveConfig sets t's source in doc and writes it as dir's
// tokenizer_config.json.
func saveConfig(dir string, doc map[string]any, t *Template) error {
	doc["chat_template"] = t.src
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("chat template %s: %w", t.name, err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFileName), append(data, '\n'), 0o644)
}
