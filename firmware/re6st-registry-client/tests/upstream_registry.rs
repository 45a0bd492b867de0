//! Our authenticated client against the upstream registry: hello, the
//! per-call HMAC and ratchet, the network configuration it produces.

use std::time::Duration;

use re6st_conf::{provision, ProvisionRequest, TokenSource};
use re6st_proto::cert;
use re6st_registry_client::client::RegistryClient;
use re6st_registry_client::transport::RegistryUrl;
use re6st_testkit::upstream_registry::UpstreamRegistry;
use re6st_testkit::Pki;

#[test]
fn session_and_network_config_with_upstream() {
    let pki = Pki::new("2001:db8::/32");
    let reg = UpstreamRegistry::start(
        &pki,
        &[
            "--anonymous-prefix-length",
            "16",
            "--hello",
            "4",
            "--client-count",
            "3",
            "--tunnel-refresh",
            "60",
        ],
    );
    let dir = reg.dir.join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = rt
        .block_on(provision(ProvisionRequest {
            registry: reg.url(),
            fingerprint: None,
            dir: dir.clone(),
            req: vec![],
            token: TokenSource::Anonymous,
            location: None,
            ca_only: false,
            timeout: Duration::from_secs(30),
        }))
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    let my_cert = done.cert.unwrap();
    let prefix = cert::node_prefix(&my_cert).unwrap();
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("cert.key")).unwrap())
            .unwrap();
    let mut client = RegistryClient::new(
        RegistryUrl::parse(&reg.url()).unwrap(),
        pki.ca.clone(),
        key,
        &prefix,
        Duration::from_secs(30),
    );
    rt.block_on(async {
        // Several authenticated calls in one session: the ratchet must match.
        let config = client
            .network_config()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
        assert_eq!(config.hello, 4);
        assert_eq!(config.client_count, 3);
        assert_eq!(config.tunnel_refresh, 60);
        assert_eq!(
            config.registry_prefix,
            Some(prefix),
            "first node is the registry's"
        );
        assert!(config.crl.is_empty());
        assert!(config.verify_version(&pki.ca).unwrap() >= 1);
        // Upstream creates babel_hmac0 at start: we are given a sign key.
        assert_eq!(config.babel_hmac_sign.as_ref().map(Vec::len), Some(16));
        let dh = client.dh().await.unwrap();
        assert!(dh.starts_with(b"-----BEGIN"));
        let renewed = client.renew_certificate().await.unwrap();
        assert_eq!(
            &renewed[..],
            &my_cert.to_pem().unwrap()[..],
            "not due: same certificate"
        );
        let again = client.network_config().await.unwrap();
        assert_eq!(again, config);
        assert!(client
            .ca()
            .await
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE"));
    });
}
