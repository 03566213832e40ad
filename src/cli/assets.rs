//! `bitcloud gen-assets DIR` (hidden; the package build runs it): man pages and shell
//! completions generated from the clap definitions themselves, so they never drift from the
//! CLI, and the commented example config (what `init` writes). Writes `DIR/man/*.1`,
//! `DIR/completions/{bitcloud.bash,_bitcloud,bitcloud.fish}` and `DIR/bitcloud.toml`.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Write the man pages and completions under `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).context("writing man pages")?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "bitcloud.bash"),
        (clap_complete::Shell::Zsh, "_bitcloud"),
        (clap_complete::Shell::Fish, "bitcloud.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "bitcloud", &mut out);
        let path = comp.join(name);
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    let example = crate::config::render_initial(
        "node.key",
        std::net::SocketAddr::from(([0, 0, 0, 0], 51820)),
        "bc0",
        crate::config::DEFAULT_CONTROL_SOCKET,
        crate::config::DEFAULT_DATA_DIR,
    );
    let path = dir.join("bitcloud.toml");
    std::fs::write(&path, example).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn man_pages_and_completions_are_generated() {
        let d = tempfile::tempdir().expect("tempdir");
        super::generate(d.path()).expect("generate");
        let page = std::fs::read_to_string(d.path().join("man/bitcloud.1")).expect("man page");
        assert!(page.contains("exit") && page.contains("wallet"), "{page}");
        assert!(d.path().join("man/bitcloud-exit-use.1").exists());
        let bash =
            std::fs::read_to_string(d.path().join("completions/bitcloud.bash")).expect("bash");
        assert!(bash.contains("cleanup") && bash.contains("exit"));
        assert!(d.path().join("completions/_bitcloud").exists());
        assert!(d.path().join("completions/bitcloud.fish").exists());
        let example = std::fs::read_to_string(d.path().join("bitcloud.toml")).expect("example");
        assert!(example.contains("# [exit]"));
    }
}
