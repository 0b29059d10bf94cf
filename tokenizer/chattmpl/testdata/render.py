#!/usr/bin/python3
"""Render every template in cases.json with Python's jinja2 the way Hugging
Face transformers' apply_chat_template does, and write expected.json.

The environment mirrors transformers: ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, the loopcontrols extension and the
{% generation %} block, a tojson filter
that keeps non-ASCII text (ensure_ascii=False), and the globals
raise_exception and strftime_now. strftime_now formats a fixed time (the
"now" field of cases.json) so that the fixtures do not change from day to
day; the Go test passes the same time.

Run with Debian's python3-jinja2:
    /usr/bin/python3 render.py [DIR]
DIR (default: this script's directory) holds cases.json; template file
names in it are relative to DIR. A template that fails to parse or render
gets {"error": message} instead of {"text": ...}.
"""

import json
import os
import sys
from datetime import datetime

from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    """transformers' {% generation %}...{% endgeneration %} block (its
    AssistantTracker), which marks assistant text and renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(d, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    now = datetime.fromisoformat(cases["now"])
    out = {}
    for case in cases["templates"]:
        with open(os.path.join(d, case["file"]), encoding="utf-8") as f:
            src = f.read()
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[Generation, loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
        renders = {}
        try:
            tmpl = env.from_string(src)
        except Exception as e:  # a template jinja2 cannot parse
            for conv in cases["conversations"]:
                for gen in ("/gen", "/nogen"):
                    renders[conv["name"] + gen] = {"error": "parse: %s" % e}
            out[case["name"]] = renders
            continue
        for conv in cases["conversations"]:
            for gen in (True, False):
                key = conv["name"] + ("/gen" if gen else "/nogen")
                kwargs = dict(messages=conv["messages"], tools=None, documents=None,
                              add_generation_prompt=gen)
                for k in ("bos_token", "eos_token"):
                    if k in case:
                        kwargs[k] = case[k]
                try:
                    renders[key] = {"text": tmpl.render(**kwargs)}
                except Exception as e:  # raise_exception, or a failed evaluation
                    renders[key] = {"error": str(e)}
        out[case["name"]] = renders
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
