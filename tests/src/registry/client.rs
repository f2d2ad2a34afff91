//! A small gRPC client for berthd's berth.images.v1.Registry service, so
//! tests drive server-side pulls and pushes and see every progress message.

use std::path::Path;

/// What a pull or push through berthd's Registry service asks for.
#[derive(Debug, Clone, Default)]
pub struct Transfer {
    /// Remote reference.
    pub reference: String,
    /// Local image (push only).
    pub image: String,
    /// `os/arch[/variant]`, empty for the default.
    pub platform: String,
    /// Basic auth user.
    pub username: String,
    /// Basic auth password.
    pub password: String,
    /// Fetch only (pull).
    pub skip_unpack: bool,
    /// Namespace; empty: `default`.
    pub namespace: String,
    /// Speak HTTPS (default: plain HTTP, as the test registries serve).
    pub tls: bool,
    /// Snapshotter to unpack into (empty: the default).
    pub snapshotter: String,
}

/// What the last progress message said, with the count of messages.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The final result.
    pub result: berth_api::images::v1::TransferResult,
    /// The blobs of the last message.
    pub blobs: Vec<berth_api::images::v1::RegistryBlob>,
    /// Progress messages received.
    pub messages: usize,
    /// Whether the pull joined one in flight.
    pub joined: bool,
}

/// A gRPC failure: code and message.
pub type Failure = (tonic::Code, String);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn client(
    address: &Path,
    namespace: &str,
) -> berth_api::images::v1::registry_client::RegistryClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let channel = crate::grpc::channel(address).await;
    let ns: tonic::metadata::AsciiMetadataValue = namespace.parse().expect("namespace");
    berth_api::images::v1::registry_client::RegistryClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("containerd-namespace", ns.clone());
            Ok(req)
        },
    )
}

fn creds(t: &Transfer) -> Option<berth_api::images::v1::RegistryCredentials> {
    (!t.username.is_empty()).then(|| berth_api::images::v1::RegistryCredentials {
        username: t.username.clone(),
        password: t.password.clone(),
        token: String::new(),
    })
}

fn ns(t: &Transfer) -> &str {
    if t.namespace.is_empty() {
        "default"
    } else {
        &t.namespace
    }
}

/// Pulls through berthd's Registry service (plain HTTP), following the
/// progress stream to its end. `on_progress` sees every message and may
/// return false to stop following (the pull goes on in berthd).
pub fn pull_with(
    address: &Path,
    t: &Transfer,
    mut on_progress: impl FnMut(&berth_api::images::v1::PullProgress) -> bool,
) -> Result<Outcome, Failure> {
    use berth_api::images::v1 as pb;
    runtime().block_on(async {
        let mut c = client(address, ns(t)).await;
        let req = pb::PullRequest {
            reference: t.reference.clone(),
            platform: t.platform.clone(),
            credentials: creds(t),
            plain_http: !t.tls,
            snapshotter: t.snapshotter.clone(),
            skip_unpack: t.skip_unpack,
            labels: Default::default(),
        };
        let mut stream = c
            .pull(req)
            .await
            .map_err(|s| (s.code(), s.message().to_string()))?
            .into_inner();
        let mut out = Outcome::default();
        loop {
            match stream.message().await {
                Ok(Some(p)) => {
                    out.messages += 1;
                    out.joined |= p.joined;
                    out.blobs = p.blobs.clone();
                    if let Some(r) = &p.result {
                        out.result = r.clone();
                    }
                    if !on_progress(&p) {
                        return Ok(out);
                    }
                }
                Ok(None) => return Ok(out),
                Err(s) => return Err((s.code(), s.message().to_string())),
            }
        }
    })
}

/// [`pull_with`] following to the end.
pub fn pull(address: &Path, t: &Transfer) -> Result<Outcome, Failure> {
    pull_with(address, t, |_| true)
}

/// Pushes through berthd's Registry service (plain HTTP).
pub fn push(address: &Path, t: &Transfer) -> Result<Outcome, Failure> {
    use berth_api::images::v1 as pb;
    runtime().block_on(async {
        let mut c = client(address, ns(t)).await;
        let req = pb::PushRequest {
            image: t.image.clone(),
            reference: t.reference.clone(),
            platform: t.platform.clone(),
            credentials: creds(t),
            plain_http: !t.tls,
        };
        let mut stream = c
            .push(req)
            .await
            .map_err(|s| (s.code(), s.message().to_string()))?
            .into_inner();
        let mut out = Outcome::default();
        loop {
            match stream.message().await {
                Ok(Some(p)) => {
                    out.messages += 1;
                    out.blobs = p.blobs.clone();
                    if let Some(r) = &p.result {
                        out.result = r.clone();
                    }
                }
                Ok(None) => return Ok(out),
                Err(s) => return Err((s.code(), s.message().to_string())),
            }
        }
    })
}
