//! Where workflows come from: the built-in one, or every file of a folder.
//! Parsing and validation are the domain's (`Workflow::from_toml`); the
//! reading is here, outside it.

use crate::domain::{Workflow, WorkflowError, Workflows};
use std::path::Path;

/// The shipped field-service workflows, built in so `fieldgate dev` needs no
/// files.
pub const FIELD_SERVICE_CASE: &str = include_str!("../../infra/workflows/field-service-case.toml");
pub const FIELD_SERVICE_WORK_ORDER: &str =
    include_str!("../../infra/workflows/field-service-work-order.toml");

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] WorkflowError),
    #[error("{dir}: no workflow files (*.toml)")]
    Empty { dir: String },
}

/// Both shipped workflows (Case first: the one a bare scan link means),
/// parsed on first use (their text is tested, it cannot fail).
pub fn builtin() -> Workflows {
    Workflows::lazy(|| {
        let work_order =
            Workflow::from_toml("field-service-work-order.toml", FIELD_SERVICE_WORK_ORDER)
                .expect("the built-in workflow is valid");
        vec![builtin_case(), work_order]
    })
}

fn builtin_case() -> Workflow {
    Workflow::from_toml("field-service-case.toml", FIELD_SERVICE_CASE)
        .expect("the built-in workflow is valid")
}

fn read(path: &Path) -> Result<Workflow, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    Ok(Workflow::from_toml(&file, &text)?)
}

/// Loads every `*.toml` in `dir`; one bad file fails the whole load, so a
/// typo never silently disables governance.
pub fn load_dir(dir: &Path) -> Result<Workflows, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        file: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let list = paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(LoadError::Empty {
            dir: dir.display().to_string(),
        });
    }
    Ok(Workflows::from_workflows(list))
}

/// A workflow file, or the built-in workflow when none is given (the CLI's
/// `--workflow` flag).
pub fn file_or_builtin(path: Option<&Path>) -> Result<Workflow, LoadError> {
    match path {
        Some(p) => read(p),
        None => Ok(builtin_case()),
    }
}

/// The deployment's reviewers replace those of every workflow (the
/// template sets them as a parameter).
/// Applied when the list is first used, so a lazy list stays lazy.
pub fn with_reviewers(workflows: &Workflows, reviewers: &[String]) -> Workflows {
    let (workflows, reviewers) = (workflows.clone(), reviewers.to_vec());
    Workflows::lazy(move || {
        workflows
            .iter()
            .map(|w| {
                let mut w = (**w).clone();
                w.reviewers = reviewers.clone();
                w
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_loads_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_dir(dir.path()), Err(LoadError::Empty { .. })));
        std::fs::write(dir.path().join("a.toml"), FIELD_SERVICE_CASE).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap().iter().count(), 1);
        std::fs::write(dir.path().join("b.toml"), "id = 1").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("b.toml"), "{err}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Whole lines of the shipped workflow, dropped, doubled or swapped:
        /// documents that parse as TOML but say odd things.
        fn line_edits() -> impl Strategy<Value = Vec<(usize, u8, usize)>> {
            proptest::collection::vec((any::<usize>(), any::<u8>(), any::<usize>()), 1..4)
        }

        fn edit_lines(text: &str, edits: &[(usize, u8, usize)]) -> String {
            let mut lines: Vec<&str> = text.lines().collect();
            for &(a, op, b) in edits {
                let n = lines.len().max(1);
                let (i, j) = (a % n, b % n);
                match op % 3 {
                    0 if !lines.is_empty() => {
                        lines.remove(i);
                    }
                    1 if !lines.is_empty() => {
                        let l = lines[j];
                        lines.insert(i, l);
                    }
                    _ if !lines.is_empty() => lines.swap(i, j),
                    _ => {}
                }
            }
            lines.join("\n")
        }

        fn refused_well(
            r: Result<Workflow, crate::domain::WorkflowError>,
        ) -> Result<(), TestCaseError> {
            if let Err(e) = r {
                prop_assert!(e.to_string().starts_with("wf.toml"), "{}", e);
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::proptest_config())]

            #[test]
            fn any_text_is_a_workflow_or_a_typed_error_naming_the_file(text in any::<String>()) {
                refused_well(Workflow::from_toml("wf.toml", &text))?;
            }

            #[test]
            fn an_edited_workflow_is_a_workflow_or_a_typed_error(
                edits in proptest::collection::vec(crate::proptest_edit(), 1..4),
            ) {
                let text = crate::domain::fixtures::mutate(FIELD_SERVICE_CASE, &edits);
                refused_well(Workflow::from_toml("wf.toml", &text))?;
            }

            #[test]
            fn a_workflow_with_lines_moved_is_a_workflow_or_a_typed_error(edits in line_edits()) {
                refused_well(Workflow::from_toml("wf.toml", &edit_lines(FIELD_SERVICE_CASE, &edits)))?;
            }
        }
    }
}
