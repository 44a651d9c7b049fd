//! The `needs` graph: every need names a job, no cycle, and an order in
//! which each job comes after the jobs it needs.

/// A problem in the graph; indices are positions in the job list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagError {
    /// Job `job`'s need number `need` names no job.
    Unknown { job: usize, need: usize },
    /// A cycle, as job indices: each needs the next, the last the first.
    Cycle(Vec<usize>),
}

/// Checks the graph of `needs` (job ids per job, in file order) and returns
/// the jobs in an order where each follows its needs; among jobs that are
/// ready together, file order is kept.
pub fn order(ids: &[&str], needs: &[Vec<String>]) -> Result<Vec<usize>, Vec<DagError>> {
    let mut errors = Vec::new();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (j, list) in needs.iter().enumerate() {
        for (n, need) in list.iter().enumerate() {
            match ids.iter().position(|id| id == need) {
                Some(i) => edges[j].push(i),
                None => errors.push(DagError::Unknown { job: j, need: n }),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut pending: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut done = vec![false; ids.len()];
    let mut out = Vec::with_capacity(ids.len());
    while out.len() < ids.len() {
        let Some(next) = (0..ids.len()).find(|&j| !done[j] && pending[j] == 0) else {
            return Err(vec![DagError::Cycle(find_cycle(&edges, &done))]);
        };
        done[next] = true;
        out.push(next);
        for (j, e) in edges.iter().enumerate() {
            pending[j] -= e.iter().filter(|&&i| i == next).count();
        }
    }
    Ok(out)
}

/// A cycle among the jobs not yet ordered (each of them needs another one
/// of them, so walking needs from any of them must come back).
fn find_cycle(edges: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let Some(start) = (0..edges.len()).find(|&j| !done[j]) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut at = start;
    loop {
        let Some(&next) = edges[at].iter().find(|&&i| !done[i]) else {
            return path;
        };
        if let Some(p) = path.iter().position(|&j| j == next) {
            return path.split_off(p);
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn orders_jobs_after_their_needs_keeping_file_order() {
        let ids = ["deploy", "build", "test", "lint"];
        let n = needs(&[&["test", "lint"], &[], &["build"], &[]]);
        assert_eq!(order(&ids, &n).unwrap(), vec![1, 2, 3, 0]);
    }

    #[test]
    fn unknown_needs_are_reported_each() {
        let ids = ["a", "b"];
        let n = needs(&[&["x"], &["a", "y"]]);
        assert_eq!(
            order(&ids, &n).unwrap_err(),
            vec![
                DagError::Unknown { job: 0, need: 0 },
                DagError::Unknown { job: 1, need: 1 }
            ]
        );
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        let ids = ["a", "b", "c", "d"];
        let n = needs(&[&[], &["c"], &["d"], &["b"]]);
        assert_eq!(
            order(&ids, &n).unwrap_err(),
            vec![DagError::Cycle(vec![1, 2, 3])]
        );
        let n = needs(&[&["a"], &[], &[], &[]]);
        assert_eq!(
            order(&["a", "b", "c", "d"], &n).unwrap_err(),
            vec![DagError::Cycle(vec![0])]
        );
    }
}
