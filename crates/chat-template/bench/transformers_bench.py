"""Times transformers' apply_chat_template over the conformance corpus, the Python side of `cmi bench templates`.

Usage: python transformers_bench.py CORPUS_DIR ITERATIONS
Uses the corpus's own render.py (tokenizer construction, frozen clock, render_case) so the work is exactly what
produced the expected files. Prints one JSON object on stdout.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path


def main() -> int:
    corpus = Path(sys.argv[1]).resolve()
    iterations = int(sys.argv[2])
    spec = importlib.util.spec_from_file_location("corpus_render", corpus / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)

    metas = [render.load_json(p) for p in sorted((corpus / "templates").glob("*.json"))]
    convs = [render.load_json(p) for p in sorted((corpus / "conversations").glob("*.json"))]
    toks = []
    for meta in metas:
        template = None
        if meta.get("chat_template", "present") is not None:
            with open(corpus / "templates" / f"{meta['name']}.jinja", encoding="utf-8", newline="") as f:
                template = f.read()
        toks.append(render.make_tokenizer(meta, template))

    def one_pass() -> tuple[int, int]:
        ok = err = 0
        for tok in toks:
            for conv in convs:
                try:
                    render.render_case(tok, conv)
                    ok += 1
                except Exception:  # noqa: BLE001 - error cases are part of the corpus
                    err += 1
        return ok, err

    one_pass()  # warm-up: compiles and caches every template, like the Rust side compiles once
    start = time.perf_counter()
    for _ in range(iterations):
        ok, err = one_pass()
    elapsed = time.perf_counter() - start
    import jinja2
    import transformers

    renders = (ok + err) * iterations
    print(json.dumps({
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "python": sys.version.split()[0],
        "iterations": iterations,
        "cases": ok + err,
        "text": ok,
        "errors": err,
        "renders": renders,
        "seconds": elapsed,
        "per_render_us": elapsed / renders * 1e6,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
