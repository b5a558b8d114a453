//! S3 through the real `aws-sdk-s3` client: objects, ranges, listing, copy, delete, multipart with checksums, and keys
//! that try to leave the bucket.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use common::{Sign, raw, s3, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_ranges_listing_copy_delete() {
    let local = start(false).await;
    let c = s3(&local.server);
    c.create_bucket().bucket("data").send().await.expect("create bucket");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.put_object()
        .bucket("data")
        .key("dir/a.bin")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");
    for k in ["dir/b.txt", "dir/sub/c.txt", "top.txt"] {
        c.put_object()
            .bucket("data")
            .key(k)
            .body(ByteStream::from_static(b"hello"))
            .send()
            .await
            .expect("put");
    }
    let got = c
        .get_object()
        .bucket("data")
        .key("dir/a.bin")
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.body.collect().await.expect("body").into_bytes().as_ref(),
        body.as_slice()
    );
    let r = c
        .get_object()
        .bucket("data")
        .key("dir/a.bin")
        .range("bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(
        r.body.collect().await.expect("body").into_bytes().as_ref(),
        &body[10..20]
    );
    let h = c
        .head_object()
        .bucket("data")
        .key("dir/a.bin")
        .send()
        .await
        .expect("head");
    assert_eq!(h.content_length(), Some(100_000));

    let l = c
        .list_objects_v2()
        .bucket("data")
        .prefix("dir/")
        .delimiter("/")
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = l.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/a.bin", "dir/b.txt"]);
    let prefixes: Vec<&str> = l.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["dir/sub/"]);
    let p1 = c
        .list_objects_v2()
        .bucket("data")
        .max_keys(2)
        .send()
        .await
        .expect("page 1");
    assert_eq!(p1.contents().len(), 2);
    assert_eq!(p1.is_truncated(), Some(true));
    let p2 = c
        .list_objects_v2()
        .bucket("data")
        .continuation_token(p1.next_continuation_token().expect("token"))
        .send()
        .await
        .expect("page 2");
    assert_eq!(p2.contents().len(), 2);

    c.copy_object()
        .bucket("data")
        .key("copy.txt")
        .copy_source("data/top.txt")
        .send()
        .await
        .expect("copy");
    let cp = c
        .get_object()
        .bucket("data")
        .key("copy.txt")
        .send()
        .await
        .expect("get copy");
    assert_eq!(cp.body.collect().await.expect("body").into_bytes().as_ref(), b"hello");

    c.delete_object()
        .bucket("data")
        .key("copy.txt")
        .send()
        .await
        .expect("delete");
    let del = Delete::builder()
        .objects(ObjectIdentifier::builder().key("top.txt").build().expect("id"))
        .objects(ObjectIdentifier::builder().key("dir/b.txt").build().expect("id"))
        .build()
        .expect("delete");
    c.delete_objects()
        .bucket("data")
        .delete(del)
        .send()
        .await
        .expect("delete objects");
    let left = c.list_objects_v2().bucket("data").send().await.expect("list");
    let keys: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/a.bin", "dir/sub/c.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_with_checksums() {
    let local = start(false).await;
    let c = s3(&local.server);
    c.create_bucket().bucket("mpu").send().await.expect("bucket");
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("big-{}", alg.as_str());
        let up = c
            .create_multipart_upload()
            .bucket("mpu")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .send()
            .await
            .expect("create mpu");
        let id = up.upload_id().expect("upload id");
        let part1: Vec<u8> = vec![7u8; 5 * 1024 * 1024];
        let part2: Vec<u8> = b"tail".to_vec();
        let mut parts = Vec::new();
        for (n, data) in [(1, part1.clone()), (2, part2.clone())] {
            let r = c
                .upload_part()
                .bucket("mpu")
                .key(&key)
                .upload_id(id)
                .part_number(n)
                .checksum_algorithm(alg.clone())
                .body(ByteStream::from(data))
                .send()
                .await
                .expect("upload part");
            let mut p = CompletedPart::builder()
                .part_number(n)
                .set_e_tag(r.e_tag().map(str::to_string));
            p = p
                .set_checksum_crc32(r.checksum_crc32().map(str::to_string))
                .set_checksum_crc32_c(r.checksum_crc32_c().map(str::to_string))
                .set_checksum_sha256(r.checksum_sha256().map(str::to_string));
            parts.push(p.build());
        }
        let listed = c
            .list_parts()
            .bucket("mpu")
            .key(&key)
            .upload_id(id)
            .send()
            .await
            .expect("list parts");
        assert_eq!(listed.parts().len(), 2);
        c.complete_multipart_upload()
            .bucket("mpu")
            .key(&key)
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .expect("complete");
        let got = c.get_object().bucket("mpu").key(&key).send().await.expect("get");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        assert_eq!(bytes.len(), part1.len() + part2.len());
        assert_eq!(&bytes[part1.len()..], b"tail");
    }
    // Abort.
    let up = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("aborted")
        .send()
        .await
        .expect("create");
    c.abort_multipart_upload()
        .bucket("mpu")
        .key("aborted")
        .upload_id(up.upload_id().expect("id"))
        .send()
        .await
        .expect("abort");
    assert!(c.head_object().bucket("mpu").key("aborted").send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cannot_escape_the_bucket() {
    let local = start(false).await;
    let c = s3(&local.server);
    c.create_bucket().bucket("jail").send().await.expect("bucket");
    for path in [
        "/jail/..%2F..%2Fcredentials",
        "/jail/a/../../escape",
        "/jail/%2Fetc%2Fpasswd",
        "/jail/nul%00byte",
    ] {
        let (st, _, body) = raw(
            &local.server,
            "PUT",
            path,
            &[],
            b"x".to_vec(),
            Some(Sign::good(&local.server, "s3")),
        )
        .await;
        assert!(
            st == 400 || st == 403,
            "{path}: {st} {}",
            String::from_utf8_lossy(&body)
        );
    }
    // The credentials file is intact and nothing was written outside the bucket.
    let creds = bedrock_server::read_credentials(local.dir.path())
        .expect("read")
        .expect("present");
    assert_eq!(&creds, local.server.credentials());
    assert!(!local.dir.path().join("escape").exists());
    assert!(!local.dir.path().join("s3").join("escape").exists());
}
