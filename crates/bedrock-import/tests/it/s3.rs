//! A throwaway S3 server (s3s-fs on 127.0.0.1:0) that counts the data requests it receives and can drop connections
//! without an answer (as a server that dies does).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub(crate) const ACCESS_KEY: &str = "AKIDTESTTESTTEST";
pub(crate) const SECRET_KEY: &str = "secret-test-key";

/// A running server; the task ends with the test's runtime.
pub(crate) struct TestS3 {
    pub(crate) endpoint: String,
    pub(crate) _root: tempfile::TempDir,
    /// `PUT` requests with a `partNumber` (UploadPart) received so far.
    pub(crate) part_puts: Arc<AtomicUsize>,
    /// `PUT` requests without one (PutObject, CreateBucket).
    pub(crate) object_puts: Arc<AtomicUsize>,
    /// The next this-many requests (of those [`TestS3::drop_only`] picks) get no answer: their connection is closed
    /// as they arrive.
    pub(crate) drop_next: Arc<AtomicUsize>,
    /// Which requests `drop_next` counts: those whose `METHOD query` contains this (all when empty).
    pub(crate) drop_only: Arc<std::sync::Mutex<String>>,
}

impl TestS3 {
    pub(crate) async fn start() -> TestS3 {
        let root = tempfile::tempdir().expect("tempdir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let part_puts = Arc::new(AtomicUsize::new(0));
        let object_puts = Arc::new(AtomicUsize::new(0));
        let drop_next = Arc::new(AtomicUsize::new(0));
        let drop_only = Arc::new(std::sync::Mutex::new(String::new()));
        let (pp, op, dn, only) = (
            part_puts.clone(),
            object_puts.clone(),
            drop_next.clone(),
            drop_only.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let (pp, op, dn, only) = (pp.clone(), op.clone(), dn.clone(), only.clone());
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let line = format!("{} {}", req.method(), req.uri().query().unwrap_or(""));
                    let picked = line.contains(only.lock().expect("lock").as_str());
                    let dropped = picked
                        && dn
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    if req.method() == hyper::Method::PUT {
                        let is_part = req.uri().query().is_some_and(|q| q.contains("partNumber="));
                        if is_part { &pp } else { &op }.fetch_add(1, Ordering::SeqCst);
                    }
                    let service = service.clone();
                    async move {
                        if dropped {
                            // An error from the service makes hyper close the connection with no response.
                            return Err(s3s::HttpError::new(Box::new(std::io::Error::other(
                                "dropped by the test",
                            ))));
                        }
                        hyper::service::Service::call(&service, req).await
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        TestS3 {
            endpoint,
            _root: root,
            part_puts,
            object_puts,
            drop_next,
            drop_only,
        }
    }

    pub(crate) fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub(crate) fn parts(&self) -> usize {
        self.part_puts.load(Ordering::SeqCst)
    }
}
