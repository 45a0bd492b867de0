//! Weak DH parameters are refused where they enter a node, with the
//! command that makes good ones: given with --dh, or served by a registry
//! (upstream's, which serves whatever it was given). Everything runs in a
//! throw-away namespace, so that a node that went on anyway would set up
//! nothing outside it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use re6st_testkit::netns::Lab;
use re6st_testkit::upstream_python;
use re6st_testkit::upstream_registry::write_dh_bits;
use re6st_testkit::Pki;

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// A directory removed when dropped, even when the test fails.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("re6st-weakdh-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// Runs `argv` in namespace `ns` until it exits (killed after 60 s).
fn run_in(ns: &str, argv: &[&str]) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// `re6st node` for `dir` (ca.crt, cert.crt, cert.key), run in `ns`.
fn node(ns: &str, dir: &Path, registry: &str, extra: &[&str]) -> Output {
    let p = |f: &str| dir.join(f).display().to_string();
    let mut argv = vec![
        BIN.to_owned(),
        "node".into(),
        "--registry".into(),
        registry.into(),
    ];
    for (o, f) in [
        ("--ca", "ca.crt"),
        ("--cert", "cert.crt"),
        ("--key", "cert.key"),
        ("-s", "state"),
        ("-r", "run"),
        ("-l", "log"),
    ] {
        argv.push(o.into());
        argv.push(p(f));
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    run_in(ns, &argv.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_node_refuses_weak_dh_given_with_dh() {
    let mut lab = Lab::new();
    let ns = lab.add_ns("n");
    let pki = Pki::new("2001:db8::/32");
    let tmp = temp_dir("given");
    let dir = &tmp.0;
    let id = pki.node("1/16", 3);
    std::fs::write(dir.join("ca.crt"), pki.ca_pem()).unwrap();
    std::fs::write(dir.join("cert.crt"), id.cert.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("cert.key"),
        id.key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let weak = dir.join("dh1024.pem");
    write_dh_bits(&weak, 1024);
    // Nothing listens at that registry: the node must stop before.
    let out = node(
        &ns,
        dir,
        "http://127.0.0.1:9/",
        &["--dh", weak.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("1024-bit DH parameters are too small"),
        "{err}"
    );
    assert!(
        err.contains(&format!("openssl dhparam -out {} 2048", weak.display())),
        "{err}"
    );
    assert!(!dir.join("state").exists(), "the node went on");
    drop(lab);
}

#[test]
fn a_node_refuses_weak_dh_from_the_registry() {
    let mut lab = Lab::new();
    let ns = lab.add_ns("n");
    let pki = Pki::new("2001:db8::/32");
    let tmp = temp_dir("served");
    let dir = &tmp.0;
    let reg = dir.join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(reg.join("ca.crt"), pki.ca_pem()).unwrap();
    std::fs::write(reg.join("ca.key"), pki.ca_key_pem()).unwrap();
    write_dh_bits(&reg.join("dh.pem"), 1024);
    // Upstream's registry, in the namespace, serves what it is given.
    let py = upstream_python();
    let bin = py.parent().unwrap().join("re6st-registry");
    let r = |f: &str| reg.join(f).display().to_string();
    lab.spawn(
        "n",
        &[
            py.to_str().unwrap(),
            bin.to_str().unwrap(),
            "--port",
            "9080",
            "-4",
            "127.0.0.1",
            "-6",
            "",
            "--ca",
            &r("ca.crt"),
            "--key",
            &r("ca.key"),
            "--dh",
            &r("dh.pem"),
            "--db",
            &r("registry.db"),
            "-l",
            &r("registry.log"),
            "-r",
            &r("run"),
            "--anonymous-prefix-length",
            "20",
        ],
        &reg.join("stderr.log"),
    );
    let url = "http://127.0.0.1:9080/";
    let connect = format!(
        "{} -c 'import socket; socket.create_connection((\"127.0.0.1\", 9080), 1)'",
        py.display()
    );
    assert!(
        Lab::wait_until(Duration::from_secs(20), || lab.try_sh("n", &connect)),
        "upstream registry did not start"
    );
    let node_dir = dir.join("node");
    let conf = run_in(
        &ns,
        &[
            BIN,
            "conf",
            "--registry",
            url,
            "--anonymous",
            "-d",
            node_dir.to_str().unwrap(),
        ],
    );
    assert!(
        conf.status.success(),
        "{}",
        String::from_utf8_lossy(&conf.stderr)
    );

    let out = node(&ns, &node_dir, url, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "DH parameters from the registry (getDh): 1024-bit DH parameters are too small"
        ),
        "{err}"
    );
    assert!(err.contains("openssl dhparam -out dh.pem 2048"), "{err}");
    // Not kept: a later start asks again.
    assert!(!node_dir.join("state").join("dh.pem").exists());
    // A copy fetched earlier (by a version that did not check) is refused
    // too, before the registry is asked anything.
    std::fs::copy(reg.join("dh.pem"), node_dir.join("state").join("dh.pem")).unwrap();
    let out = node(&ns, &node_dir, "http://127.0.0.1:9/", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("(the registry's, fetched earlier): 1024-bit"),
        "{err}"
    );
    assert!(err.contains("remove this copy"), "{err}");
    drop(lab);
}
