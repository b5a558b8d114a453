"""Times transformers' apply_chat_template over the conformance corpus, the Python side of `cmi bench templates`.

Usage: python transformers_bench.py CORPUS_DIR
Uses the corpus's own render.py for the tokenizers (exactly the template and special tokens that produced the expected
files) and the frozen clock. What is timed is one `apply_chat_template(messages, tools=..., add_generation_prompt=...,
tokenize=False, **template_kwargs)` call per case, templates compiled once (a warm-up pass fills transformers' compile
cache), like the Rust side. render.py's `render_case` deep-copies its inputs first; transformers already copies them
itself (`_plain_template_data`), so that copy is harness work and is left out. Models without a template (Flan-T5) are
not timed: there is nothing to render.

Protocol (so that the Rust side can interleave its own passes with these, both sampling the same machine load): after
the warm-up one JSON line describes the cases (versions, template groups, wrong outputs); then every line read from
stdin holding a number N runs N passes and answers with one JSON line {"passes": [[seconds per template group], ...]}.
End of input ends the script.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path


def main() -> int:
    corpus = Path(sys.argv[1]).resolve()
    spec = importlib.util.spec_from_file_location("corpus_render", corpus / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)

    metas = [render.load_json(p) for p in sorted((corpus / "templates").glob("*.json"))]
    convs = [render.load_json(p) for p in sorted((corpus / "conversations").glob("*.json"))]
    groups = []  # (template name, [(case id, call, expected bytes or None)])
    for meta in metas:
        if meta.get("chat_template", "present") is None:
            continue
        with open(corpus / "templates" / f"{meta['name']}.jinja", encoding="utf-8", newline="") as f:
            template = f.read()
        tok = render.make_tokenizer(meta, template)
        calls = []
        for conv in convs:
            kwargs = dict(conv.get("template_kwargs") or {})

            def call(tok=tok, conv=conv, kwargs=kwargs):
                return tok.apply_chat_template(
                    conv["messages"],
                    tools=conv.get("tools"),
                    add_generation_prompt=bool(conv["add_generation_prompt"]),
                    tokenize=False,
                    **kwargs,
                )

            expected = corpus / "expected" / f"{meta['name']}__{conv['id']}.txt"
            calls.append((f"{meta['name']}__{conv['id']}", call, expected.read_bytes() if expected.exists() else None))
        groups.append((meta["name"], calls))

    # Warm-up (compiles and caches every template) and correctness: the same check the Rust side makes.
    wrong = []
    for _, calls in groups:
        for case_id, call, expected in calls:
            try:
                good = call().encode("utf-8") == expected
            except Exception:  # noqa: BLE001 - error cases are part of the corpus
                good = expected is None
            if not good:
                wrong.append(case_id)

    import jinja2
    import transformers

    print(json.dumps({
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "python": sys.version.split()[0],
        "groups": [{"template": name, "cases": len(calls)} for name, calls in groups],
        "wrong": wrong,
    }), flush=True)

    perf = time.perf_counter
    for line in sys.stdin:
        passes = []
        for _ in range(int(line)):
            times = []
            for _, calls in groups:
                t0 = perf()
                for _, call, _ in calls:
                    try:
                        call()
                    except Exception:  # noqa: BLE001
                        pass
                times.append(perf() - t0)
            passes.append(times)
        print(json.dumps({"passes": passes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
