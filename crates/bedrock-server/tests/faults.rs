//! Fault injection on the S3 wire: clients that disconnect at every stage of a PutObject overwrite, an UploadPart and
//! a CompleteMultipartUpload, and malformed aws-chunked bodies. After every fault the same invariants are checked
//! ([`Check`]): the key holds one whole version (bytes, content type and user metadata of the same write, never a
//! mix), a write cut off before its body ended left the previous version, no temporary file is left in the store, a
//! part is absent or whole, an upload is completed or still complete-able. Each fault is one line of a table.
//!
//! Seeded like the `cmi` suite (`CMI_FAULT_SEED`, printed), which picks the cut points inside each stage.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{Sign, signed, start, wire_bytes};
use test_support::faults::{self, Rng};
use tokio::io::AsyncWriteExt as _;

const MIB: usize = 1024 * 1024;

/// Where the client goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Inside the request line and headers.
    Headers,
    /// Inside the body.
    Body,
    /// Right after the last byte of the body: the server has everything, the client never reads the answer.
    AfterBody,
    /// After the body, with the write half shut first (a client that half-closes, then goes).
    HalfClosed,
}

const STAGES: [Stage; 4] = [Stage::Headers, Stage::Body, Stage::AfterBody, Stage::HalfClosed];

/// Sends the first `cut` bytes of `bytes` (all of them for the after-body stages) and goes away as `stage` says.
async fn send_and_vanish(host: &str, bytes: &[u8], stage: Stage, headers_len: usize, rng: &mut Rng) {
    let cut = match stage {
        Stage::Headers => 1 + rng.index(headers_len - 1),
        Stage::Body => headers_len + 1 + rng.index(bytes.len() - headers_len - 1),
        Stage::AfterBody | Stage::HalfClosed => bytes.len(),
    };
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(&bytes[..cut]).await.expect("write");
    if stage == Stage::HalfClosed {
        s.shutdown().await.expect("shutdown");
        tokio::time::sleep(Duration::from_millis(rng.below(5))).await;
    }
    drop(s);
}

/// The length of the request line and headers in `wire`.
fn head_len(wire: &[u8]) -> usize {
    wire.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers") + 4
}

/// One version of an object: bytes and the headers written with them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    bytes: Vec<u8>,
    content_type: String,
    tag: String,
}

fn version(i: usize, len: usize) -> Version {
    let mut bytes = format!("version {i}:").into_bytes();
    bytes.extend((0..len).map(|j| ((j * 31 + i * 7) % 251) as u8));
    Version {
        bytes,
        content_type: format!("application/x-v{i}"),
        tag: format!("v{i}"),
    }
}

/// The invariant checks, in one place.
struct Check<'a> {
    local: &'a bedrock_server::testing::TestServer,
    s3: aws_sdk_s3::Client,
    checked: usize,
}

impl Check<'_> {
    /// Waits until the store has settled (no request of the vanished client still running: no temporary files for
    /// 100 ms, the request's head given time to be read first) and fails if it does not within 10 s.
    async fn settled(&self, what: &str) {
        let t = Instant::now();
        let mut quiet = 0;
        tokio::time::sleep(Duration::from_millis(30)).await;
        loop {
            let staged = temp_files(self.local.dir.path());
            quiet = if staged.is_empty() { quiet + 1 } else { 0 };
            if quiet >= 10 {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{what}: temporary files left in the store: {staged:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The key holds exactly one of `allowed`, whole; returns which.
    async fn one_of(&mut self, what: &str, key: &str, allowed: &[&Version]) -> usize {
        self.settled(what).await;
        self.checked += 1;
        let got = self
            .s3
            .get_object()
            .bucket("faults")
            .key(key)
            .send()
            .await
            .expect("get");
        let content_type = got.content_type().unwrap_or_default().to_string();
        let tag = got.metadata().and_then(|m| m.get("tag")).cloned().unwrap_or_default();
        let bytes = got.body.collect().await.expect("body").into_bytes().to_vec();
        let seen = Version {
            bytes,
            content_type,
            tag,
        };
        allowed.iter().position(|v| **v == seen).unwrap_or_else(|| {
            let head = String::from_utf8_lossy(&seen.bytes[..seen.bytes.len().min(12)]).into_owned();
            panic!(
                "{what}: {key} is torn: {} bytes starting {head:?}, content type {:?}, tag {:?}; expected one of {:?}",
                seen.bytes.len(),
                seen.content_type,
                seen.tag,
                allowed.iter().map(|v| &v.tag).collect::<Vec<_>>()
            )
        })
    }
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("s3"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp."))
                .collect()
        })
        .unwrap_or_default()
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, v: &Version) {
    s3.put_object()
        .bucket("faults")
        .key(key)
        .content_type(&v.content_type)
        .metadata("tag", &v.tag)
        .body(ByteStream::from(v.bytes.clone()))
        .send()
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_at_any_stage_never_tear_an_object_or_leave_files() {
    let mut rng = Rng::new(faults::seed());
    let local = start(false).await;
    let s3 = common::s3(&local.server);
    s3.create_bucket().bucket("faults").send().await.expect("bucket");
    let host = local.server.endpoint_url().trim_start_matches("http://").to_string();
    let mut check = Check {
        local: &local,
        s3: s3.clone(),
        checked: 0,
    };
    let mut faults = 0;

    // PutObject overwrites, cut at every stage.
    let mut current = version(0, 300 * 1024);
    put(&s3, "o", &current).await;
    let mut replaced = 0;
    for i in 1..=80 {
        let stage = STAGES[i % STAGES.len()];
        let next = version(i, 300 * 1024 + rng.index(64 * 1024));
        let req = signed(
            &local.server.endpoint_url(),
            local.server.region(),
            "PUT",
            "/faults/o",
            &[("content-type", &next.content_type), ("x-amz-meta-tag", &next.tag)],
            next.bytes.clone(),
            Some(Sign::good(&local.server, "s3")),
        );
        let wire = wire_bytes(&req);
        send_and_vanish(&host, &wire, stage, head_len(&wire), &mut rng).await;
        faults += 1;
        let what = format!("PutObject {i} cut {stage:?}");
        let allowed: &[&Version] = match stage {
            Stage::Headers | Stage::Body => &[&current],
            Stage::AfterBody | Stage::HalfClosed => &[&current, &next],
        };
        if check.one_of(&what, "o", allowed).await == 1 {
            current = next;
            replaced += 1;
        }
    }
    eprintln!("PutObject overwrites cut after their body that landed whole: {replaced} of 40");
    // A request delivered whole is carried out although its client has gone: the store runs it detached from the
    // connection. (Run on the connection's task, hyper dropped every one of them; a few may still be dropped
    // before they reach the store.)
    assert!(
        replaced >= 10,
        "only {replaced} of 40 overwrites whose whole request was delivered were carried out"
    );

    // UploadPart, cut at every stage: the part is absent or whole.
    let id = s3
        .create_multipart_upload()
        .bucket("faults")
        .key("m")
        .send()
        .await
        .expect("create")
        .upload_id()
        .expect("id")
        .to_string();
    for (n, stage) in (1..).zip(STAGES.iter().cycle().take(16)) {
        let data = version(n as usize, 5 * MIB + rng.index(1000)).bytes;
        let req = signed(
            &local.server.endpoint_url(),
            local.server.region(),
            "PUT",
            &format!("/faults/m?partNumber={n}&uploadId={id}"),
            &[],
            data.clone(),
            Some(Sign::good(&local.server, "s3")),
        );
        let wire = wire_bytes(&req);
        send_and_vanish(&host, &wire, *stage, head_len(&wire), &mut rng).await;
        faults += 1;
        let what = format!("UploadPart {n} cut {stage:?}");
        check.settled(&what).await;
        check.checked += 1;
        let parts = s3
            .list_parts()
            .bucket("faults")
            .key("m")
            .upload_id(&id)
            .send()
            .await
            .expect("list parts");
        if let Some(p) = parts.parts().iter().find(|p| p.part_number() == Some(n)) {
            assert!(
                matches!(stage, Stage::AfterBody | Stage::HalfClosed),
                "{what}: a part cut off inside its request was stored"
            );
            let md5 = format!("\"{}\"", hex_md5(&data));
            assert_eq!(p.size(), Some(data.len() as i64), "{what}: a torn part");
            assert_eq!(p.e_tag(), Some(md5.as_str()), "{what}: a torn part");
        }
    }

    // CompleteMultipartUpload, cut at every stage: the new object whole and the upload gone, or the previous object
    // whole and the upload still complete-able.
    for (i, stage) in (100..).zip(STAGES.iter().cycle().take(12)) {
        let new = version(i, 5 * MIB + 10);
        let (first, second) = new.bytes.split_at(5 * MIB);
        let up = s3
            .create_multipart_upload()
            .bucket("faults")
            .key("o")
            .content_type(&new.content_type)
            .metadata("tag", &new.tag)
            .send()
            .await
            .expect("create");
        let id = up.upload_id().expect("id").to_string();
        let mut parts = Vec::new();
        for (n, data) in [(1, first), (2, second)] {
            let r = s3
                .upload_part()
                .bucket("faults")
                .key("o")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(data.to_vec()))
                .send()
                .await
                .expect("part");
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(r.e_tag().expect("etag"))
                    .build(),
            );
        }
        let xml = format!(
            "<CompleteMultipartUpload>{}</CompleteMultipartUpload>",
            parts
                .iter()
                .map(|p| format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                    p.part_number().unwrap_or_default(),
                    p.e_tag().unwrap_or_default()
                ))
                .collect::<String>()
        );
        let req = signed(
            &local.server.endpoint_url(),
            local.server.region(),
            "POST",
            &format!("/faults/o?uploadId={id}"),
            &[("content-type", "application/xml")],
            xml.into_bytes(),
            Some(Sign::good(&local.server, "s3")),
        );
        let wire = wire_bytes(&req);
        send_and_vanish(&host, &wire, *stage, head_len(&wire), &mut rng).await;
        faults += 1;
        let what = format!("CompleteMultipartUpload {i} cut {stage:?}");
        // A completion still assembling holds the upload; wait until it is gone or has stayed a while.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500)
            && s3
                .list_parts()
                .bucket("faults")
                .key("o")
                .upload_id(&id)
                .send()
                .await
                .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let allowed: &[&Version] = match stage {
            Stage::Headers | Stage::Body => &[&current],
            Stage::AfterBody | Stage::HalfClosed => &[&current, &new],
        };
        let which = check.one_of(&what, "o", allowed).await;
        let listed = s3.list_parts().bucket("faults").key("o").upload_id(&id).send().await;
        if which == 1 {
            assert!(listed.is_err(), "{what}: completed, but the upload is still there");
            current = new;
        } else {
            assert!(listed.is_ok(), "{what}: not completed, and the upload is gone");
            s3.complete_multipart_upload()
                .bucket("faults")
                .key("o")
                .upload_id(&id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .expect("the upload is still complete-able");
            check.one_of(&format!("{what}, completed again"), "o", &[&new]).await;
            current = new;
        }
    }
    eprintln!(
        "disconnect faults: {faults}, invariant checks {}, temporary files left 0",
        check.checked
    );
}

fn hex_md5(data: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    hex::encode(s3s::crypto::Md5::checksum(data))
}

/// An aws-chunked body: the chunks as given, then the final chunk and `trailer`.
fn chunked(chunks: &[&[u8]], trailer: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for c in chunks {
        b.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        b.extend_from_slice(c);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"0\r\n");
    b.extend_from_slice(trailer.as_bytes());
    b.extend_from_slice(b"\r\n");
    b
}

fn crc32_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(data).to_be_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_aws_chunked_bodies_are_refused_and_store_nothing() {
    let local = start(false).await;
    let s3 = common::s3(&local.server);
    s3.create_bucket().bucket("faults").send().await.expect("bucket");
    let old = version(0, 70_000);
    put(&s3, "c", &old).await;
    let mut check = Check {
        local: &local,
        s3: s3.clone(),
        checked: 0,
    };
    let data = version(1, 70_000).bytes;
    let (a, b) = data.split_at(40_000);
    let good_trailer = format!("x-amz-checksum-crc32:{}\r\n", crc32_b64(&data));
    let len = data.len();
    let with_chunk = |size: &str, body: &[u8], rest: &str| {
        let mut v = format!("{size}\r\n").into_bytes();
        v.extend_from_slice(body);
        v.extend_from_slice(rest.as_bytes());
        v
    };
    // (fault, body, x-amz-decoded-content-length): one line each.
    let faults: Vec<(&str, Vec<u8>, usize)> = vec![
        (
            "shorter than its decoded length",
            chunked(&[a, b], &good_trailer),
            len + 100,
        ),
        (
            "longer than its decoded length",
            chunked(&[a, b], &good_trailer),
            len - 5,
        ),
        (
            "a chunk size that is not hex",
            with_chunk("zz", &data, "\r\n0\r\n\r\n"),
            len,
        ),
        (
            "a chunk shorter than its size",
            with_chunk(&format!("{:x}", len + 50), &data, "\r\n0\r\n\r\n"),
            len,
        ),
        ("no final chunk", with_chunk(&format!("{len:x}"), &data, "\r\n"), len),
        (
            "no CRLF after a chunk",
            with_chunk(&format!("{len:x}"), &data, "0\r\n\r\n"),
            len,
        ),
        (
            "a chunk size too large",
            with_chunk("ffffffffffffffff", &data, "\r\n0\r\n\r\n"),
            len,
        ),
        (
            "a wrong trailing checksum",
            chunked(&[a, b], "x-amz-checksum-crc32:AAAAAA==\r\n"),
            len,
        ),
        (
            "a chunk cut off",
            chunked(&[a, b], &good_trailer)[..30_000].to_vec(),
            len,
        ),
    ];
    for (fault, body, declared) in &faults {
        let mut sign = Sign::good(&local.server, "s3");
        sign.payload = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
        let declared = declared.to_string();
        let (st, _, answer) = common::raw(
            &local.server,
            "PUT",
            "/faults/c",
            &[
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", &declared),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
                ("content-type", "application/x-malformed"),
            ],
            body.clone(),
            Some(sign),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            (400..500).contains(&st),
            "{fault}: expected a 4xx refusal, got {st}: {answer}"
        );
        check.one_of(fault, "c", &[&old]).await;
    }
    // The same body, well formed, is stored (the table's faults are the only thing wrong with them).
    let mut sign = Sign::good(&local.server, "s3");
    sign.payload = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    let (st, _, answer) = common::raw(
        &local.server,
        "PUT",
        "/faults/c",
        &[
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", &len.to_string()),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ],
        chunked(&[a, b], &good_trailer),
        Some(sign),
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&answer));
    eprintln!(
        "malformed-body faults: {}, invariant checks {}",
        faults.len(),
        check.checked
    );
}
