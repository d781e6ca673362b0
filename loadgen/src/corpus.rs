//! `--messages`: the messages of an mbox file or a Maildir (or plain directory of files),
//! with CRLF line ends.

use std::path::Path;

/// Every message in `p`.
pub fn load_messages(p: &Path) -> Result<Vec<Vec<u8>>, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        // Maildir: cur/ and new/, or a plain directory of files.
        let mut dirs = vec![p.join("cur"), p.join("new")];
        if !dirs.iter().any(|d| d.is_dir()) {
            dirs = vec![p.to_path_buf()];
        }
        for d in dirs.into_iter().filter(|d| d.is_dir()) {
            for e in std::fs::read_dir(&d).map_err(|e| e.to_string())? {
                let path = e.map_err(|e| e.to_string())?.path();
                if path.is_file() {
                    out.push(std::fs::read(&path).map_err(|e| e.to_string())?);
                }
            }
        }
    } else {
        // mbox: messages start at lines "From " after an empty line (or at the start).
        let data = std::fs::read(p).map_err(|e| e.to_string())?;
        let mut cur: Vec<u8> = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b"From ") {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            let line = if line.starts_with(b">From ") {
                &line[1..]
            } else {
                line
            };
            if line.ends_with(b"\r\n") || !line.ends_with(b"\n") {
                cur.extend_from_slice(line);
            } else {
                cur.extend_from_slice(&line[..line.len() - 1]);
                cur.extend_from_slice(b"\r\n");
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    if out.is_empty() {
        return Err(format!("no messages in {}", p.display()));
    }
    Ok(out)
}
