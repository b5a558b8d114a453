//! Unit tests: how the vocabulary is spelled as bytes.

use serde_json::json;
use tokenizers::Tokenizer;
use toktrie::TokTrie;

use crate::vocab::{Spelling, spelling, token_bytes};

fn tiny_tokenizer(family: test_support::Family) -> Tokenizer {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), family).expect("tiny model");
    Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer.json loads")
}

/// Concatenating the byte spelling of the tokens of any text gives back the text, including multi-byte characters
/// split across tokens (the byte tokens of Japanese and emoji are partial UTF-8).
#[test]
fn byte_level_spelling_round_trips_text() {
    let tok = tiny_tokenizer(test_support::Family::Llama);
    assert_eq!(spelling(&tok).expect("byte-level"), Spelling::ByteLevel);
    let words = token_bytes(&tok, Spelling::ByteLevel);
    assert_eq!(words.len(), tok.get_vocab_size(true));
    for text in [
        "the weather in paris is sunny",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"paris\"}}",
        "こんにちは世界 🙂 café\n\t~\u{7f}",
    ] {
        let enc = tok.encode(text, false).expect("encode");
        assert!(enc.get_ids().len() > 1);
        let spelled: Vec<u8> = enc
            .get_ids()
            .iter()
            .flat_map(|&id| words[id as usize].clone())
            .collect();
        assert_eq!(String::from_utf8(spelled).expect("utf-8"), text);
    }
    // All 256 bytes are spelled by exactly one single-byte token.
    let mut single = [0usize; 256];
    for w in &words {
        if w.len() == 1 {
            single[w[0] as usize] += 1;
        }
    }
    assert!(single.iter().all(|&n| n == 1), "{single:?}");
}

/// Special added tokens carry llguidance's marker byte; added tokens that are not special are plain text.
#[test]
fn added_tokens_special_marker_only_for_special() {
    let tok = tiny_tokenizer(test_support::Family::Qwen2);
    let words = token_bytes(&tok, Spelling::ByteLevel);
    let im_end = tok.token_to_id("<|im_end|>").expect("im_end");
    let mut expected = vec![TokTrie::SPECIAL_TOKEN_MARKER];
    expected.extend_from_slice(b"<|im_end|>");
    assert_eq!(words[im_end as usize], expected);
    let tool_call = tok.token_to_id("<tool_call>").expect("tool_call");
    assert_eq!(words[tool_call as usize], b"<tool_call>");
}

/// A SentencePiece-style tokenizer (Metaspace + byte fallback, as Llama 2 and Mistral) spells '▁' as a space and
/// `<0xNN>` as the byte.
#[test]
fn sentencepiece_spelling() {
    let json = json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false},
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xE3>": 4, "\u{2581}": 5, "a": 6, "\u{2581}a": 7},
                  "merges": ["\u{2581} a"]}
    });
    let tok: Tokenizer = json.to_string().parse().expect("tokenizer loads");
    let sp = spelling(&tok).expect("sentencepiece");
    assert_eq!(sp, Spelling::SentencePiece { space: '\u{2581}' });
    let words = token_bytes(&tok, sp);
    assert_eq!(words[3], b"\n");
    assert_eq!(words[4], [0xE3]);
    assert_eq!(words[5], b" ");
    assert_eq!(words[7], b" a");
    assert_eq!(words[2][0], TokTrie::SPECIAL_TOKEN_MARKER);
}

/// A tokenizer with a decoder the constraint cannot read is refused with the decoder named.
#[test]
fn unsupported_decoder_is_refused() {
    let json = json!({
        "version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1}}
    });
    let tok: Tokenizer = json.to_string().parse().expect("tokenizer loads");
    let err = crate::ConstraintFactory::new(&tok, &[0]).expect_err("wordpiece is refused");
    assert!(err.to_string().contains("WordPiece"), "{err}");
}
