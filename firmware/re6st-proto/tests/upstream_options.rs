//! Options files expand exactly as upstream's argument parser expands them.

use re6st_proto::options::expand;
use re6st_testkit::run_upstream;

#[test]
fn expansion_matches_upstream() {
    let dir = std::env::temp_dir().join(format!("re6st-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inc = dir.join("inc.conf");
    std::fs::write(&inc, "ca /etc/re6stnet/ca.crt\n# comment\nverbose 3\n").unwrap();
    let main = dir.join("re6stnet.conf");
    std::fs::write(
        &main,
        format!(
            "registry http://198.18.0.1/\n@{}\n  # indented\n\nO--verb\nO3\nip 'a b' \"c\\\"d\"\nv 4\npp 1194 udp\n  key value\n",
            inc.display()
        ),
    )
    .unwrap();
    let args = [
        "--before".to_string(),
        format!("@{}", main.display()),
        "--after".into(),
    ];
    let long = ["--registry", "--ca", "--verbose", "--ip", "--pp", "--key"];
    let script = r#"
import sys, json
from re6st import utils
p = utils.ArgParser(fromfile_prefix_chars='@')
for o in ('--registry', '--ca', '--verbose', '--ip', '--pp', '--key'):
    p.add_argument(o)
p.add_argument('-O', action='append'); p.add_argument('-v')
print(json.dumps(p._read_args_from_files(sys.argv[1:])))
"#;
    let out = run_upstream(
        script,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        b"",
    );
    let theirs: Vec<String> = serde_json::from_slice(&out).unwrap();
    let ours = expand(
        args.iter().cloned(),
        &|o| long.contains(&o),
        &mut |f: &str| std::fs::read_to_string(f),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(ours, theirs);
}
