"""`cmi bench engine`'s peers: llama.cpp (llama-cpp-python, on a GGUF) and transformers (PyTorch CPU, on the HF
folder), measured the way the engine's own workers measure it, on the same token ids (the bench tokenises once and
hands every contender the same prompts), and printed as one JSON line.

argv: mode path threads n_dec streams runs prompts.json repack(on|off) history(0|1)
"""
import json, resource, sys, time

t_start = time.perf_counter()
mode, path, threads, n_dec, streams, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
prompts = json.load(open(sys.argv[7]))
repack, history = sys.argv[8] == "on", sys.argv[9] == "1"
chat, prefill = prompts["chat"], prompts["prefill"]


def median(v):
    return sorted(v)[len(v) // 2]


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


if mode == "llamacpp":
    from llama_cpp import Llama
    import llama_cpp.llama_cpp as lc
    import numpy as np
    # llama.cpp's extra buffer types repack weights for special kernels (its AMX backend on CPUs with AMX, the
    # interleaved Q4_0/IQ4_NL layouts elsewhere): its best configuration, and its default. `off` runs its ordinary
    # CPU kernels from the mapped file (the bench falls back to it when repacking crashes on this machine).
    if not repack:
        default_params = lc.llama_model_default_params

        def model_params():
            p = default_params()
            p.use_extra_bufts = False
            return p
        lc.llama_model_default_params = model_params
    need = max(len(prefill), len(chat) + n_dec, len(prompts["history"]) + len(prompts["question"]) + 8 if history else 0)
    n_ctx = max(2048, (need + 255) // 256 * 256)
    t_load = time.perf_counter()
    llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, n_batch=512, verbose=False)
    load_s = time.perf_counter() - t_load

    def run(ids, n, reset=True):
        if reset:
            llm.reset()
        t = time.perf_counter(); first = None; k = 0
        for _ in llm.create_completion(ids, max_tokens=n, temperature=0.0, stream=True):
            k += 1
            if first is None: first = time.perf_counter() - t
        return first, time.perf_counter() - t - first, k
    first_token = run(chat, 1)[0]
    cold_start = time.perf_counter() - t_start
    run(chat, 2)
    ttft = median([run(chat, 1)[0] for _ in range(3)])
    prefill_s = ttft if prefill == chat else median([run(prefill, 1)[0] for _ in range(1 if len(prefill) > 64 else 3)])
    decode = median([(k - 1) / dt for _, dt, k in (run(chat, n_dec) for _ in range(runs))])
    # Bytes a decode step reads: every tensor once, but of the input embedding one row, unless it is the output too.
    import gguf
    reader = gguf.GGUFReader(path)
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    embd = sizes.get("token_embd.weight", 0)
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(llm.model))
    read = sum(sizes.values()) - (embd - embd // n_vocab if "output.weight" in sizes else 0)
    import os
    out = {"name": f"llama.cpp ({os.path.basename(path)}, repack {'on' if repack else 'off'})",
           "load_s": load_s, "cold_start_s": cold_start, "first_token_s": first_token,
           "prompt_tokens": len(prefill), "prompt_tps": len(prefill) / prefill_s, "ttft_ms": ttft * 1000,
           "decode_tps": decode, "read_mb": read / 1e6, "read_gbs": read * decode / 1e9, "repack": repack}
    if history:
        # Second turn of a conversation: llama-cpp-python keeps its context's tokens and evaluates only what follows
        # the longest common prefix (its own prefix reuse), as llama-server's cache_prompt does.
        first = run(prompts["history"], 1)[0]
        second = run(prompts["history"] + prompts["question"], 1, reset=False)[0]
        out.update({"history_tokens": len(prompts["history"]), "first_ttft_ms": first * 1000,
                    "second_ttft_ms": second * 1000})
    if streams > 1:
        # N concurrent streams the way llama.cpp serves them (its `batched` example, llama-server's parallel slots):
        # one context holding N sequences over the same weights; the N prompts go in one llama_decode, then every
        # step is one llama_decode of each stream's next token. Greedy, every stream decodes n_dec tokens.
        sp = prompts["streams"][:streams]
        cp = lc.llama_context_default_params()
        cp.n_threads = cp.n_threads_batch = threads
        cp.n_seq_max = streams
        cp.kv_unified = False
        cp.n_ctx = streams * 256 * ((max(len(p) for p in sp) + n_dec + 255) // 256)
        cp.n_batch = cp.n_ubatch = max(sum(len(p) for p in sp), streams)
        ctx = lc.llama_init_from_model(llm.model, cp)
        if not ctx:
            raise RuntimeError("llama_init_from_model failed for the multi-stream context")
        batch = lc.llama_batch_init(cp.n_batch, 0, 1)

        def step(items):
            batch.n_tokens = len(items)
            for k, (tok, pos, seq, want) in enumerate(items):
                batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = tok, pos, 1, want
                batch.seq_id[k][0] = seq
            if lc.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            rows = [k for k, it in enumerate(items) if it[3]]
            return [int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, k), shape=(n_vocab,)).argmax()) for k in rows]
        t = time.perf_counter()
        nxt = step([(tok, pos, s, pos == len(p) - 1) for s, p in enumerate(sp) for pos, tok in enumerate(p)])
        t_first = time.perf_counter()
        for d in range(1, n_dec):
            nxt = step([(nxt[s], len(p) + d - 1, s, True) for s, p in enumerate(sp)])
        t_end = time.perf_counter()
        lc.llama_batch_free(batch)
        lc.llama_free(ctx)
        out.update({"streams": streams, "total_tps": streams * n_dec / (t_end - t),
                    "decode_total_tps": streams * (n_dec - 1) / (t_end - t_first)})
    out["peak_rss_mb"] = rss()
else:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(threads); torch.set_grad_enabled(False)
    t_load = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t_load
    ids = torch.tensor([chat])

    def forward(x):
        t = time.perf_counter(); model(x); return time.perf_counter() - t
    forward(ids)
    cold_start = time.perf_counter() - t_start
    ttft = median([forward(ids) for _ in range(3)])
    prefill_s = ttft if prefill == chat else median([forward(torch.tensor([prefill])) for _ in range(1 if len(prefill) > 64 else 3)])

    def decode():
        t = time.perf_counter()
        g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_dec, min_new_tokens=n_dec, do_sample=False)
        return (g.shape[1] - ids.shape[1] - 1) / (time.perf_counter() - t - ttft)
    decode = median([decode() for _ in range(runs)])
    out = {"name": "transformers f32 (PyTorch CPU)", "load_s": load_s, "cold_start_s": cold_start,
           "prompt_tokens": len(prefill), "prompt_tps": len(prefill) / prefill_s, "ttft_ms": ttft * 1000,
           "decode_tps": decode}
    if streams > 1:
        tok.padding_side = "left"
        if tok.pad_token is None: tok.pad_token = tok.eos_token
        batch = tok.pad({"input_ids": prompts["streams"][:streams]}, padding=True, return_tensors="pt")
        t = time.perf_counter()
        g = model.generate(**batch, max_new_tokens=n_dec, min_new_tokens=n_dec, do_sample=False)
        out.update({"streams": streams,
                    "total_tps": (g.shape[1] - batch["input_ids"].shape[1]) * streams / (time.perf_counter() - t)})
    out["peak_rss_mb"] = rss()
print(json.dumps(out))
