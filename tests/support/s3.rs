//! A real S3-compatible server in-process on 127.0.0.1 (s3s-fs: buckets are folders of a temp dir, objects are
//! files), with one access key; objects are uploaded through the S3 API with `object_store`.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::PathBuf;

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "wasmfn-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "wasmfn-test-secret";

/// A running server; stopped when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server on an ephemeral port, on its own thread and runtime (tests stay synchronous).
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    let socket = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => socket,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
        });
        S3Server { endpoint, root, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    /// Creates a bucket (s3s-fs: a folder of the root).
    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).expect("create the bucket folder");
    }

    /// Uploads `bytes` as `bucket/key` through the S3 API.
    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .build()
            .expect("S3 client");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(store.put(&object_store::path::Path::from(key), bytes.into()))
            .unwrap_or_else(|e| panic!("uploading s3://{bucket}/{key}: {e}"));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `http://127.0.0.1:PORT` where nothing listens: a port bound and released.
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("addr"))
}

/// A `.tar.gz` of the folder `dir`, stored below `prefix/` in the archive.
pub fn tar_gz(dir: &std::path::Path, prefix: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(prefix, dir).expect("archive the folder");
    tar.into_inner().expect("finish the tar").finish().expect("finish the gzip")
}
