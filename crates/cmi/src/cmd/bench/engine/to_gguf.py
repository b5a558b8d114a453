"""`cmi bench engine --shape`: the same random weights for llama.cpp. Writes a Hugging Face Llama folder (bf16
safetensors, one file or shards with an index) as a bf16 GGUF with gguf-py, llama.cpp's own writer, taking the
tokenizer's metadata from a GGUF of the same tokenizer, then quantises it with llama.cpp's own quantiser
(llama_model_quantize) into each requested type. Every output is written beside its final name and renamed.

argv: folder tokenizer_gguf out_prefix threads type[,type...]   (types: Q4_K_M, Q4_0, Q8_0, BF16)
"""
import ctypes, json, os, struct, sys
import numpy as np
import gguf
import llama_cpp.llama_cpp as lc

folder, tok_path, out_prefix, threads, types = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
cfg = json.load(open(os.path.join(folder, "config.json")))
index = os.path.join(folder, "model.safetensors.index.json")
files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]


def tensors():
    """Every tensor as a read-only view of the mapped file: bf16 as uint16."""
    for file in files:
        path = os.path.join(folder, file)
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] != "BF16":
                raise SystemExit(f"{file}: tensor {name} is {info['dtype']}, expected BF16")
            a, b = info["data_offsets"]
            yield name, data[a:b].view(np.uint16).reshape(info["shape"])


def permute(w, n_head):
    """HF's rotate-half order of a q/k projection's rows into GGUF Llama's interleaved pairs (as llama.cpp's
    convert_hf_to_gguf does), so that both engines compute the same attention from the same weights."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    return f"blk.{parts[2]}.{NAMES['.'.join(parts[3:-1])]}.weight"


bf16_path = out_prefix + "-BF16.gguf"
if not os.path.exists(bf16_path):
    w = gguf.GGUFWriter(bf16_path + ".partial", "llama")
    w.add_name(os.path.basename(folder.rstrip("/")))
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    reader = gguf.GGUFReader(tok_path)
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    for name, t in tensors():
        if t.ndim == 1:
            # llama.cpp keeps norms in f32, as its converter writes them; bf16 widens exactly.
            w.add_tensor(gguf_name(name), (t.astype(np.uint32) << 16).view(np.float32))
            continue
        if name.endswith("q_proj.weight"):
            t = permute(t, cfg["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            t = permute(t, cfg["num_key_value_heads"])
        w.add_tensor(gguf_name(name), t, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.rename(bf16_path + ".partial", bf16_path)

FTYPES = {"Q4_K_M": 15, "Q4_0": 2, "Q8_0": 7}
for kind in types.split(","):
    out = f"{out_prefix}-{kind}.gguf"
    if kind == "BF16" or os.path.exists(out):
        continue
    params = lc.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.nthread = threads
    if lc.llama_model_quantize(bf16_path.encode(), (out + ".partial").encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama_model_quantize to {kind} failed")
    os.rename(out + ".partial", out)
if "BF16" not in types.split(","):
    os.remove(bf16_path)
print(json.dumps({"written": [f"{out_prefix}-{k}.gguf" for k in types.split(",")]}))
