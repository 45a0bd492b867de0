//! The UDP peer protocol against upstream's `x509.Peer`, in both
//! directions: hello0 / hello handshake, then authenticated messages,
//! with replays rejected on both sides.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use re6st_proto::peer::{
    handle_handshake, new_secret, HandshakeAction, Identity, PeerTable, Received,
};
use re6st_proto::prefix::Prefix;
use re6st_testkit::{temp_file, upstream_python, NodeId, Pki};

/// Upstream node B, answering datagrams as its tunnel manager would.
const UPSTREAM_B: &str = r#"
import sys, json
from OpenSSL import crypto
from re6st import x509
ca, key, cert, a_prefix = sys.argv[1:5]
me = x509.Cert(ca, key, cert)
peer = x509.Peer(a_prefix)
def out(o):
    print(json.dumps(o)); sys.stdout.flush()
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd['op'] == 'hello0':
        m = peer.hello0(me.cert); peer.hello0Sent()
        out([m.hex()]); continue
    if cmd['op'] == 'send':
        out([peer.encode(bytes.fromhex(cmd['hex'])).hex()]); continue
    d = peer.decode(bytes.fromhex(cmd['hex']))
    replies = []
    if type(d) is tuple:
        seqno, body, protocol = d
        if seqno == 2:
            i = len(body) // 2
            peer.verify(body[i:], body[:i])
            peer.newSession(me.decrypt(body[:i]), protocol)
            replies.append(peer.encode(b'\x04').hex())
        else:
            knows = False
            if seqno:
                h = x509.fingerprint(me.cert).digest()
                knows = body.startswith(h); body = body[len(h):]
            peer.cert = me.loadVerify(body, True, crypto.FILETYPE_ASN1)
            if knows:
                replies.append(peer.hello(me, protocol).hex())
            else:
                m = peer.hello0(me.cert)
                if m:
                    peer.hello0Sent(); replies.append(m.hex())
    elif d:
        replies.append(peer.encode(b'echo:' + d).hex())
    else:
        replies = None
    out(replies)
"#;

struct UpstreamB {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl UpstreamB {
    fn start(
        pki: &Pki,
        b: &NodeId,
        a_prefix: &Prefix,
        files: &mut Vec<std::path::PathBuf>,
    ) -> UpstreamB {
        let ca = temp_file("ca.pem", &pki.ca_pem());
        let key = temp_file("b.key", &b.key_pem());
        let cert = temp_file("b.crt", &b.cert_pem());
        let mut child = Command::new(upstream_python())
            .args(["-c", UPSTREAM_B])
            .args([&ca, &key, &cert])
            .arg(a_prefix.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        files.extend([ca, key, cert]);
        UpstreamB {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// Sends a command; returns B's datagrams, or None if B rejected ours.
    fn ask(&mut self, op: &str, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        writeln!(
            self.stdin,
            r#"{{"op": "{op}", "hex": "{}"}}"#,
            hex::encode(data)
        )
        .unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Option<Vec<String>> =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        v.map(|l| l.iter().map(|h| hex::decode(h).unwrap()).collect())
    }
}

impl Drop for UpstreamB {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup() -> (Pki, Identity, NodeId, Prefix, Prefix) {
    let pki = Pki::new("2001:db8::/32");
    let a = pki.node("1/16", 1);
    let b = pki.node("2/16", 2);
    let (pa, pb) = (a.prefix, b.prefix);
    let me = Identity::new(pki.ca.clone(), a.cert.clone(), a.key.clone()).unwrap();
    (pki, me, b, pa, pb)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn handshake(
    me: &Identity,
    peers: &mut PeerTable,
    from: &Prefix,
    datagram: &[u8],
    n: u8,
) -> HandshakeAction {
    let peer = peers.entry(*from, [0; 20]);
    let Received::Handshake {
        seqno,
        protocol,
        body,
    } = peer.decode(datagram)
    else {
        panic!("not a handshake datagram")
    };
    let body = body.to_vec();
    handle_handshake(
        me,
        peers,
        from,
        seqno,
        protocol,
        &body,
        &BTreeSet::new(),
        now(),
        new_secret(now_micros() + u64::from(n), [n; 12]),
        [0; 20],
    )
}

#[test]
fn we_initiate() {
    let (pki, me, b, _pa, pb) = setup();
    let mut files = Vec::new();
    let mut up = UpstreamB::start(&pki, &b, &me.prefix, &mut files);
    let mut peers = PeerTable::default();
    // A -> B: hello0 without B's certificate (seqno 0).
    let h0 = peers
        .entry(pb, [0; 20])
        .hello0(&me.cert_der, now())
        .unwrap()
        .unwrap();
    let replies = up.ask("recv", &h0).unwrap();
    // B -> A: its hello0, knowing our certificate (seqno 1).
    let action = handshake(&me, &mut peers, &pb, &replies[0], 1);
    let HandshakeAction::SendHello(hello) = action else {
        panic!("expected to start a session, got {action:?}")
    };
    // A -> B: hello (seqno 2); B answers with an authenticated message.
    let replies = up.ask("recv", &hello).unwrap();
    let peer = peers.get_mut(&pb).unwrap();
    assert_eq!(peer.decode(&replies[0]), Received::Message(b"\x04"));
    assert!(peer.connected(now()));
    let mut last = Vec::new();
    for i in 0..3u8 {
        let m = peer.encode(&[b'x', i]).unwrap();
        let r = up.ask("recv", &m).unwrap();
        assert_eq!(
            peer.decode(&r[0]),
            Received::Message(&[b'e', b'c', b'h', b'o', b':', b'x', i][..])
        );
        // Our replay of B's datagram is rejected.
        assert_eq!(peer.decode(&r[0]), Received::Rejected);
        last = m;
    }
    // B rejects our replayed datagram.
    assert_eq!(up.ask("recv", &last), None);
    for f in files {
        std::fs::remove_file(f).ok();
    }
}

#[test]
fn they_initiate() {
    let (pki, me, b, _pa, pb) = setup();
    let mut files = Vec::new();
    let mut up = UpstreamB::start(&pki, &b, &me.prefix, &mut files);
    let mut peers = PeerTable::default();
    // B -> A: hello0 (seqno 0); A answers its hello0 knowing B (seqno 1).
    let h0 = up.ask("hello0", b"").unwrap();
    let action = handshake(&me, &mut peers, &pb, &h0[0], 1);
    let HandshakeAction::SendHello0(reply) = action else {
        panic!("expected a hello0, got {action:?}")
    };
    // B -> A: hello (seqno 2).
    let hello = up.ask("recv", &reply).unwrap();
    assert_eq!(
        handshake(&me, &mut peers, &pb, &hello[0], 2),
        HandshakeAction::SessionAccepted
    );
    let peer = peers.get_mut(&pb).unwrap();
    assert_eq!(peer.protocol, 8, "upstream 0.642 announces protocol 8");
    let m = peer.encode(b"\x00").unwrap();
    let r = up.ask("recv", &m).unwrap();
    assert_eq!(peer.decode(&r[0]), Received::Message(b"echo:\x00"));
    let from_b = up.ask("send", b"\x01").unwrap();
    assert_eq!(peer.decode(&from_b[0]), Received::Message(b"\x01"));
    assert_eq!(peer.decode(&from_b[0]), Received::Rejected);
    // A tampered datagram is rejected.
    let mut t = up.ask("send", b"\x05").unwrap().remove(0);
    let last = t.len() - 1;
    t[last] ^= 1;
    assert_eq!(peer.decode(&t), Received::Rejected);
    assert_eq!(up.ask("recv", &m), None, "B rejects a replay");
    for f in files {
        std::fs::remove_file(f).ok();
    }
}
