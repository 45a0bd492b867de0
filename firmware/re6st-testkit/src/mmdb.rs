//! A minimal MaxMind DB writer (IPv4 tree, 24-bit records, country and
//! continent only), to test GeoIP without shipping a database.

use std::net::Ipv4Addr;

fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    assert!(size < 29);
    if kind <= 7 {
        out.push(kind << 5 | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    control(2, s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn uint(kind: u8, v: u64, out: &mut Vec<u8>) {
    let bytes: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    control(kind, bytes.len(), out);
    out.extend_from_slice(&bytes);
}

/// Writes a value into the buffer.
type Writer<'a> = &'a dyn Fn(&mut Vec<u8>);

fn map(entries: &[(&str, Writer)], out: &mut Vec<u8>) {
    control(7, entries.len(), out);
    for (k, v) in entries {
        string(k, out);
        v(out);
    }
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// A database mapping each `network/len` to (country, continent).
pub fn build(entries: &[(Ipv4Addr, u8, &str, &str)]) -> Vec<u8> {
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for (i, (ip, len, _, _)) in entries.iter().enumerate() {
        let bits = u32::from(*ip);
        let mut node = 0;
        for depth in 0..*len {
            let bit = (bits >> (31 - depth) & 1) as usize;
            if depth + 1 == *len {
                nodes[node][bit] = Record::Data(i);
            } else {
                node = match nodes[node][bit] {
                    Record::Node(n) => n,
                    _ => {
                        nodes.push([Record::Empty; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Record::Node(n);
                        n
                    }
                };
            }
        }
    }
    let mut data = vec![];
    let mut offsets = vec![];
    for (_, _, country, continent) in entries {
        offsets.push(data.len());
        map(
            &[
                ("continent", &|o: &mut Vec<u8>| {
                    map(&[("code", &|o: &mut Vec<u8>| string(continent, o))], o)
                }),
                ("country", &|o: &mut Vec<u8>| {
                    map(&[("iso_code", &|o: &mut Vec<u8>| string(country, o))], o)
                }),
            ],
            &mut data,
        );
    }
    let count = nodes.len();
    let mut out = vec![];
    for n in &nodes {
        for r in n {
            let v = match *r {
                Record::Empty => count,
                Record::Node(i) => i,
                Record::Data(i) => count + 16 + offsets[i],
            } as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    map(
        &[
            ("binary_format_major_version", &|o: &mut Vec<u8>| {
                uint(5, 2, o)
            }),
            ("binary_format_minor_version", &|o: &mut Vec<u8>| {
                uint(5, 0, o)
            }),
            ("build_epoch", &|o: &mut Vec<u8>| uint(9, 1, o)),
            ("database_type", &|o: &mut Vec<u8>| {
                string("GeoIP2-Country", o)
            }),
            // Readers that verify the metadata want a non-empty map here.
            ("description", &|o: &mut Vec<u8>| {
                map(&[("en", &|o: &mut Vec<u8>| string("re6st test", o))], o)
            }),
            ("ip_version", &|o: &mut Vec<u8>| uint(5, 4, o)),
            ("languages", &|o: &mut Vec<u8>| control(11, 0, o)),
            ("node_count", &|o: &mut Vec<u8>| uint(6, count as u64, o)),
            ("record_size", &|o: &mut Vec<u8>| uint(5, 24, o)),
        ],
        &mut out,
    );
    out
}
