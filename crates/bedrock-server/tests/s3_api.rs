//! S3 through the real `aws-sdk-s3` client: objects, ranges, listing, copy, delete, multipart with checksums, keys
//! that try to leave the bucket, writes into a missing bucket, and writes that must fail without touching the
//! previous object (bad checksums in headers, in an aws-chunked trailer, and a CompleteMultipartUpload that fails).

mod common;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
};
use base64::Engine as _;
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
        // ListParts answers as S3 does: in order, each part with its size, its ETag and the checksum it was
        // uploaded with, so that a client that lost its own record can trust them.
        assert_eq!(listed.parts().len(), 2);
        for (p, (n, data)) in listed.parts().iter().zip([(1, &part1), (2, &part2)]) {
            let sent = &parts[n as usize - 1];
            assert_eq!(p.part_number(), Some(n));
            assert_eq!(p.size(), Some(data.len() as i64));
            assert_eq!(p.e_tag(), sent.e_tag(), "part {n} with {alg:?}");
            assert_eq!(p.checksum_crc32(), sent.checksum_crc32(), "part {n}");
            assert_eq!(p.checksum_crc32_c(), sent.checksum_crc32_c(), "part {n}");
            assert_eq!(p.checksum_sha256(), sent.checksum_sha256(), "part {n}");
            assert!(
                p.checksum_crc32()
                    .or(p.checksum_crc32_c())
                    .or(p.checksum_sha256())
                    .is_some(),
                "part {n} is listed without its {alg:?} checksum"
            );
        }
        // A page at a time.
        let page = c
            .list_parts()
            .bucket("mpu")
            .key(&key)
            .upload_id(id)
            .max_parts(1)
            .send()
            .await
            .expect("list a page");
        assert_eq!(page.parts().len(), 1);
        assert_eq!(page.is_truncated(), Some(true));
        let next = c
            .list_parts()
            .bucket("mpu")
            .key(&key)
            .upload_id(id)
            .part_number_marker(page.next_part_number_marker().expect("marker"))
            .send()
            .await
            .expect("list the next page");
        assert_eq!(
            next.parts().iter().map(|p| p.part_number()).collect::<Vec<_>>(),
            [Some(2)]
        );
        assert_eq!(next.is_truncated(), Some(false));
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
    // An upload that is gone is NoSuchUpload, the answer that tells a resuming client to start over.
    let gone = c
        .list_parts()
        .bucket("mpu")
        .key("aborted")
        .upload_id(up.upload_id().expect("id"))
        .send()
        .await
        .expect_err("the aborted upload is gone");
    assert_eq!(failure(gone).1, "NoSuchUpload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_chunked_body_shorter_than_its_decoded_length_is_refused_and_not_stored() {
    let local = start(false).await;
    let c = s3(&local.server);
    c.create_bucket().bucket("sums").send().await.expect("bucket");
    let data = b"fewer bytes than declared".to_vec();
    for (key, declared) in [("short", data.len() + 100), ("long", data.len() - 5)] {
        let mut sign = Sign::good(&local.server, "s3");
        sign.payload = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
        let declared = declared.to_string();
        let (st, _, body) = raw(
            &local.server,
            "PUT",
            &format!("/sums/{key}"),
            &[
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", &declared),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
            ],
            aws_chunked(&data, "x-amz-checksum-crc32", &crc32_b64(&data)),
            Some(sign),
        )
        .await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(st, 400, "{key}: {body}");
        if key == "short" {
            assert!(body.contains("<Code>IncompleteBody</Code>"), "{body}");
        }
        let head = c.head_object().bucket("sums").key(key).send().await;
        assert!(head.is_err(), "the {key} body was stored");
        assert_eq!(root_litter(local.dir.path()), Vec::<String>::new());
    }
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

/// The HTTP status and S3 error code of a failed call.
fn failure<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> (u16, String) {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    (status, e.code().unwrap_or("(no code)").to_string())
}

/// Names of the files directly in the store root that are not object records (uploads in progress, parts, staged
/// temporary files).
fn root_litter(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("s3"))
        .expect("store root")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".bucket-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_into_a_missing_bucket_fail_with_no_such_bucket() {
    let local = start(false).await;
    let c = s3(&local.server);
    c.create_bucket().bucket("present").send().await.expect("bucket");
    c.put_object()
        .bucket("present")
        .key("src.txt")
        .body(ByteStream::from_static(b"source"))
        .send()
        .await
        .expect("put");

    let e = c
        .put_object()
        .bucket("absent")
        .key("dir/a.txt")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("PutObject into a missing bucket");
    assert_eq!(failure(e), (404, "NoSuchBucket".to_string()));
    let e = c
        .create_multipart_upload()
        .bucket("absent")
        .key("big")
        .send()
        .await
        .expect_err("CreateMultipartUpload in a missing bucket");
    assert_eq!(failure(e), (404, "NoSuchBucket".to_string()));
    let e = c
        .copy_object()
        .bucket("absent")
        .key("copy.txt")
        .copy_source("present/src.txt")
        .send()
        .await
        .expect_err("CopyObject into a missing bucket");
    assert_eq!(failure(e), (404, "NoSuchBucket".to_string()));

    // Nothing was created: no bucket, no directory, no pending upload.
    let buckets = c.list_buckets().send().await.expect("list buckets");
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["present"]);
    let e = c.head_bucket().bucket("absent").send().await.expect_err("head");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert!(!local.dir.path().join("s3").join("absent").exists());
    assert_eq!(root_litter(local.dir.path()), Vec::<String>::new());
}

/// Asserts that `sums/k` still holds `original` with its CRC32 `crc`, as GetObject (validated by the SDK) and
/// HeadObject report it, and that it is the only object of the bucket.
async fn assert_original(c: &aws_sdk_s3::Client, original: &[u8], crc: &str, context: &str) {
    let got = c
        .get_object()
        .bucket("sums")
        .key("k")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{context}: GetObject: {e:?}"));
    assert_eq!(got.checksum_crc32(), Some(crc), "{context}: stored checksum");
    assert_eq!(got.content_type(), Some("text/plain"), "{context}: content type");
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert!(bytes.as_ref() == original, "{context}: the object was replaced");
    let h = c
        .head_object()
        .bucket("sums")
        .key("k")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{context}: HeadObject: {e:?}"));
    assert_eq!(h.checksum_crc32(), Some(crc), "{context}: HeadObject checksum");
    assert_eq!(h.content_length(), Some(original.len() as i64), "{context}: length");
    let l = c.list_objects_v2().bucket("sums").send().await.expect("list");
    let keys: Vec<&str> = l.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["k"], "{context}: objects listed");
}

/// Puts the original object `sums/k` (text/plain, CRC32) and returns its CRC32.
async fn put_original(c: &aws_sdk_s3::Client, original: &[u8]) -> String {
    c.create_bucket().bucket("sums").send().await.expect("bucket");
    let put = c
        .put_object()
        .bucket("sums")
        .key("k")
        .content_type("text/plain")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(original.to_vec()))
        .send()
        .await
        .expect("put the original");
    put.checksum_crc32().expect("CRC32 of the original").to_string()
}

/// An aws-chunked body (unsigned chunks) with one trailing header.
fn aws_chunked(data: &[u8], trailer: &str, value: &str) -> Vec<u8> {
    let mut b = format!("{:x}\r\n", data.len()).into_bytes();
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n0\r\n");
    b.extend_from_slice(format!("{trailer}:{value}\r\n\r\n").as_bytes());
    b
}

/// PutObject `sums/KEY` as `STREAMING-UNSIGNED-PAYLOAD-TRAILER` with a trailing `x-amz-checksum-crc32`.
async fn put_with_trailer(server: &bedrock_server::RunningServer, key: &str, data: &[u8], crc: &str) -> (u16, String) {
    let mut sign = Sign::good(server, "s3");
    sign.payload = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    let len = data.len().to_string();
    let (st, _, body) = raw(
        server,
        "PUT",
        &format!("/sums/{key}"),
        &[
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", &len),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ],
        aws_chunked(data, "x-amz-checksum-crc32", crc),
        Some(sign),
    )
    .await;
    (st, String::from_utf8_lossy(&body).into_owned())
}

fn crc32_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(data).to_be_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_bad_checksum_keeps_the_previous_object() {
    let local = start(false).await;
    let c = s3(&local.server);
    let original = b"the original object, which must survive".to_vec();
    let crc = put_original(&c, &original).await;
    assert_original(&c, &original, &crc, "before").await;

    let replacement = || ByteStream::from_static(b"a replacement that must never land");
    let put = || c.put_object().bucket("sums").key("k").content_type("text/plain");
    let zero4 = "AAAAAA==";
    let zero32 = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let empty_md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
    let attempts = [
        (
            "x-amz-checksum-crc32",
            put().checksum_crc32(zero4).body(replacement()).send().await,
        ),
        (
            "x-amz-checksum-crc32c",
            put().checksum_crc32_c(zero4).body(replacement()).send().await,
        ),
        (
            "x-amz-checksum-sha256",
            put().checksum_sha256(&zero32).body(replacement()).send().await,
        ),
        (
            "Content-MD5",
            put().content_md5(empty_md5).body(replacement()).send().await,
        ),
    ];
    for (what, r) in attempts {
        let e = r.expect_err(what);
        assert_eq!(failure(e), (400, "BadDigest".to_string()), "{what}");
        assert_original(&c, &original, &crc, what).await;
    }

    // The same through an aws-chunked body with a trailing checksum: a right trailer is accepted...
    let data = b"chunked upload".to_vec();
    let (st, body) = put_with_trailer(&local.server, "chunked", &data, &crc32_b64(&data)).await;
    assert_eq!(st, 200, "{body}");
    let got = c
        .get_object()
        .bucket("sums")
        .key("chunked")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("get the chunked upload");
    assert_eq!(got.checksum_crc32(), Some(crc32_b64(&data).as_str()));
    assert_eq!(
        got.body.collect().await.expect("body").into_bytes().as_ref(),
        data.as_slice()
    );
    c.delete_object()
        .bucket("sums")
        .key("chunked")
        .send()
        .await
        .expect("delete");
    // ...and a wrong one is refused without replacing the object.
    let (st, body) = put_with_trailer(&local.server, "k", b"a replacement that must never land", zero4).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("<Code>BadDigest</Code>"), "{body}");
    assert_original(&c, &original, &crc, "aws-chunked trailer").await;
    assert_eq!(
        root_litter(local.dir.path()),
        Vec::<String>::new(),
        "staged files left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_complete_multipart_upload_changes_nothing() {
    let local = start(false).await;
    let c = s3(&local.server);
    let original = b"the original object, which must survive".to_vec();
    let crc = put_original(&c, &original).await;
    let up = c
        .create_multipart_upload()
        .bucket("sums")
        .key("k")
        .content_type("application/x-new")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .expect("create");
    let id = up.upload_id().expect("upload id").to_string();
    let part1 = vec![1u8; 5 * 1024 * 1024];
    let part2 = b"tail".to_vec();
    let upload = |n: i32, data: Vec<u8>| {
        c.upload_part()
            .bucket("sums")
            .key("k")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data))
    };
    let e1 = upload(1, part1.clone()).send().await.expect("part 1");
    assert_eq!(e1.checksum_crc32(), Some(crc32_b64(&part1).as_str()));
    let e1 = e1.e_tag().expect("etag").to_string();
    // A part whose checksum does not match its bytes is refused.
    let e = c
        .upload_part()
        .bucket("sums")
        .key("k")
        .upload_id(&id)
        .part_number(2)
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(part2.clone()))
        .send()
        .await
        .expect_err("part with a bad checksum");
    assert_eq!(failure(e), (400, "BadDigest".to_string()));
    let e2 = upload(2, part2.clone()).send().await.expect("part 2");
    let e2 = e2.e_tag().expect("etag").to_string();
    let part = |n: i32, etag: &str| CompletedPart::builder().part_number(n).e_tag(etag).build();
    let complete = |parts: Vec<CompletedPart>| {
        c.complete_multipart_upload()
            .bucket("sums")
            .key("k")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };

    // A part that was never uploaded: refused before anything changes.
    let fake = "\"00000000000000000000000000000000\"";
    let e = complete(vec![part(1, &e1), part(3, fake)])
        .await
        .expect_err("missing part");
    assert_eq!(failure(e), (400, "InvalidPart".to_string()));
    assert_original(&c, &original, &crc, "after a missing part").await;
    // A listed ETag that is not the uploaded part's: refused after assembly, still before the commit.
    let e = complete(vec![part(1, &e1), part(2, fake)])
        .await
        .expect_err("wrong etag");
    assert_eq!(failure(e), (400, "InvalidPart".to_string()));
    assert_original(&c, &original, &crc, "after a wrong ETag").await;
    // Parts out of order.
    let e = complete(vec![part(2, &e2), part(1, &e1)])
        .await
        .expect_err("out of order");
    assert_eq!(failure(e), (400, "InvalidPartOrder".to_string()));
    assert_original(&c, &original, &crc, "after parts out of order").await;

    // The upload survived the failures: the right list completes it, whole.
    let done = complete(vec![part(1, &e1), part(2, &e2)]).await.expect("complete");
    assert!(
        done.e_tag().is_some_and(|e| e.ends_with("-2\"") || e.ends_with("-2")),
        "{done:?}"
    );
    let got = c
        .get_object()
        .bucket("sums")
        .key("k")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("get the new object");
    assert_eq!(got.content_type(), Some("application/x-new"));
    assert_eq!(
        got.checksum_crc32(),
        None,
        "the previous object's checksum must not describe the new one"
    );
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(bytes.len(), part1.len() + part2.len());
    assert!(bytes[..part1.len()] == part1[..] && bytes[part1.len()..] == part2[..]);
    // The upload is gone, and so are its parts.
    let e = complete(vec![part(1, &e1), part(2, &e2)])
        .await
        .expect_err("completed twice");
    assert_eq!(failure(e), (404, "NoSuchUpload".to_string()));
    assert_eq!(root_litter(local.dir.path()), Vec::<String>::new());
}

/// The multipart ETag S3 computes: the MD5 of the parts' binary MD5s, then `-N`.
fn multipart_etag(parts: &[&[u8]]) -> String {
    use s3s::crypto::{Checksum as _, Md5};
    let mut all = Md5::new();
    for p in parts {
        let mut one = Md5::new();
        one.update(p);
        all.update(&one.finalize());
    }
    format!("\"{}-{}\"", hex::encode(all.finalize()), parts.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_uploaded_again_or_copied_over_counts_with_its_new_bytes() {
    // The store records each part's MD5 when it arrives and completes from those records; a part replaced by a second
    // UploadPart or by UploadPartCopy must never be completed with the first one's MD5.
    let local = start(false).await;
    let c = s3(&local.server);
    c.create_bucket().bucket("redo").send().await.expect("bucket");
    let source: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    c.put_object()
        .bucket("redo")
        .key("source")
        .body(ByteStream::from(source.clone()))
        .send()
        .await
        .expect("put source");
    let up = c
        .create_multipart_upload()
        .bucket("redo")
        .key("obj")
        .send()
        .await
        .expect("create mpu");
    let id = up.upload_id().expect("upload id");
    let first = vec![1u8; 5 * 1024 * 1024];
    let second = vec![2u8; 5 * 1024 * 1024];
    let tail = b"tail".to_vec();
    let put = |n: i32, data: Vec<u8>| {
        c.upload_part()
            .bucket("redo")
            .key("obj")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(data))
            .send()
    };
    put(1, first.clone()).await.expect("part 1");
    let p1 = put(1, second.clone()).await.expect("part 1 again");
    put(2, first.clone()).await.expect("part 2");
    let p2 = c
        .upload_part_copy()
        .bucket("redo")
        .key("obj")
        .upload_id(id)
        .part_number(2)
        .copy_source("redo/source")
        .send()
        .await
        .expect("part 2 copied over");
    let p3 = put(3, tail.clone()).await.expect("part 3");
    let etag2 = p2.copy_part_result().and_then(|r| r.e_tag()).map(str::to_string);
    let parts = vec![
        CompletedPart::builder()
            .part_number(1)
            .set_e_tag(p1.e_tag().map(str::to_string))
            .build(),
        CompletedPart::builder().part_number(2).set_e_tag(etag2).build(),
        CompletedPart::builder()
            .part_number(3)
            .set_e_tag(p3.e_tag().map(str::to_string))
            .build(),
    ];
    let done = c
        .complete_multipart_upload()
        .bucket("redo")
        .key("obj")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .expect("complete");
    assert_eq!(done.e_tag(), Some(multipart_etag(&[&second, &source, &tail]).as_str()));
    let got = c.get_object().bucket("redo").key("obj").send().await.expect("get");
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(bytes.len(), second.len() + source.len() + tail.len());
    assert!(bytes[..second.len()] == second[..], "part 1 is the second upload");
    assert!(
        bytes[second.len()..second.len() + source.len()] == source[..],
        "part 2 is the copy"
    );
    // Nothing of the upload is left in the store: no part, no MD5 record.
    let litter: Vec<String> = std::fs::read_dir(local.dir.path().join("s3"))
        .expect("store root")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}
