//! Fuzzing the safetensors header reader: arbitrary bytes (with or without a plausible length prefix and JSON
//! header) fail with an error naming the file, never a panic.

use proptest::prelude::*;
use test_support::Family;

fn fresh() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), Family::Llama).expect("tiny model");
    dir
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), len in 0u64..300) {
        let dir = fresh();
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend(body);
        std::fs::write(dir.path().join("model.safetensors"), bytes).expect("write");
        let err = infer_models::load(dir.path(), None).err().map(|e| e.to_string());
        prop_assert!(err.is_some_and(|e| e.contains("model.safetensors")));
    }

    #[test]
    fn json_headers_with_bad_offsets_never_panic(start in 0usize..5000, end in 0usize..5000, shape in 0usize..100) {
        let dir = fresh();
        let header = format!(
            r#"{{"model.embed_tokens.weight":{{"dtype":"F32","shape":[{shape},64],"data_offsets":[{start},{end}]}}}}"#
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; 64]);
        std::fs::write(dir.path().join("model.safetensors"), bytes).expect("write");
        prop_assert!(infer_models::load(dir.path(), None).is_err());
    }
}
