//! The life of a QR code after it is printed: revoking one asset's code
//! (`fieldgate qr revoke`), issuing the generation that follows, and
//! rotating the signing key (`fieldgate keys rotate`).
//!
//! Why generations: a code is a signature over asset, workflow, key id and
//! a generation number; the store keeps, per asset × workflow, the lowest
//! generation still valid. Revoking steps it up (withdrawing every code of
//! that sticker issued so far, whatever its key), and `fieldgate qr`
//! signs the next code with the stored generation, so the reprint works at
//! once. The check is one key lookup per scan in the store the server
//! already reads, so a revocation counts at once, in every process.

use fieldgate::compose::Keys;
use fieldgate::domain::{AssetId, Operation, Timestamp, Workflow, Workflows};
use fieldgate::ports::{AssetDirectory, CodeRevocation, ProposalStore};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(
        "no workflow {given:?} takes QR reports here (known: {known}); give the server's --workflows DIR"
    )]
    UnknownWorkflow { given: String, known: String },
    #[error(
        "asset {0} is unknown: no report of it was ever stored on this server{1}. If a sticker of it was printed but never reported on, add --force to revoke it anyway"
    )]
    UnknownAsset(AssetId, &'static str),
    #[error("no keys in {0} (the file does not exist); give the server's --data DIR or --file")]
    NoKeys(String),
    #[error(transparent)]
    Store(#[from] fieldgate::ports::StoreError),
    #[error(transparent)]
    Build(#[from] fieldgate::compose::BuildError),
    #[error("asking Salesforce for the asset")]
    Directory(#[from] fieldgate::ports::DirectoryError),
}

/// The workflows a sticker can report to (an update workflow changes a
/// record by id: assistants only).
pub fn sticker_workflows(list: &Workflows) -> Vec<Arc<Workflow>> {
    list.iter()
        .filter(|w| w.operation != Operation::Update)
        .cloned()
        .collect()
}

/// `--workflow ID`, or every workflow a sticker can report to.
pub fn chosen_workflows(
    list: &Workflows,
    given: Option<&str>,
) -> Result<Vec<Arc<Workflow>>, CodeError> {
    let all = sticker_workflows(list);
    match given {
        None => Ok(all),
        Some(w) => all
            .iter()
            .find(|x| x.id.as_str() == w)
            .cloned()
            .map(|x| vec![x])
            .ok_or_else(|| CodeError::UnknownWorkflow {
                given: w.to_owned(),
                known: all
                    .iter()
                    .map(|x| x.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

/// Revokes the codes of `asset` for each of `workflows`. An asset this
/// server has never seen (no cached card: stored reports write it, scans
/// do not; and, with Salesforce configured, unknown there too) is refused
/// unless `force`: a typo would otherwise revoke nothing anyone holds and
/// look like success.
pub async fn revoke(
    store: &dyn ProposalStore,
    directory: Option<&dyn AssetDirectory>,
    asset: &AssetId,
    workflows: &[Arc<Workflow>],
    by: &str,
    now: Timestamp,
    force: bool,
) -> Result<Vec<(Arc<Workflow>, CodeRevocation)>, CodeError> {
    if !force && store.cached_asset(asset).await?.is_none() {
        match directory {
            Some(d) => {
                if d.lookup(asset).await?.is_none() {
                    return Err(CodeError::UnknownAsset(
                        asset.clone(),
                        " and Salesforce has no such Asset",
                    ));
                }
            }
            None => return Err(CodeError::UnknownAsset(asset.clone(), "")),
        }
    }
    let mut out = Vec::new();
    for wf in workflows {
        let r = store.revoke_code(asset, &wf.id, by, now).await?;
        tracing::info!(asset = %asset, workflow = %wf.id, generation = r.generation, by, "QR code revoked");
        out.push((wf.clone(), r));
    }
    Ok(out)
}

/// The generation a new code of `asset` × `workflow` is signed with.
pub async fn generation(
    store: &dyn ProposalStore,
    asset: &AssetId,
    workflow: &Workflow,
) -> Result<u32, CodeError> {
    Ok(store
        .code_revocation(asset, &workflow.id)
        .await?
        .map_or(0, |r| r.generation))
}

/// The scan link of one generation of a code.
pub fn url(
    keys: &Keys,
    workflow: &Workflow,
    base: &str,
    asset: &AssetId,
    generation: u32,
) -> String {
    format!(
        "{}/q/{}",
        base.trim_end_matches('/'),
        keys.qr.sign_generation(asset, &workflow.id, generation)
    )
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub new_kid: String,
    pub old_kid: String,
    pub old_valid_until: Timestamp,
}

/// Rotates the QR key of the keys document at `path`, in place.
pub fn rotate(path: &Path, grace: time::Duration, now: Timestamp) -> Result<Rotated, CodeError> {
    let mut keys =
        Keys::load(path)?.ok_or_else(|| CodeError::NoKeys(path.display().to_string()))?;
    let old_kid = keys.qr.current.clone();
    let new_kid = keys.qr.rotate(now, grace, &mut rand::rng());
    let old_valid_until = keys.qr.retiring[&old_kid].after;
    keys.save(path)?;
    Ok(Rotated {
        new_kid,
        old_kid,
        old_valid_until,
    })
}

/// Who revoked, for the record: the account running the command.
pub fn operator() -> String {
    ["FIELDGATE_OPERATOR", "SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "cli".into())
}
