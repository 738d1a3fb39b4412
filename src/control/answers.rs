//! The answers to the commands that need no worker (all but `stacks`):
//! the JSON `data` gunicorn's handlers give, from what the master shows
//! through [`Supervisor`], and the [`Action`]s that change something.

use std::time::Instant;

use serde_json::{json, Value};

use super::protocol::{self, Command};
use super::{Action, Supervisor};

/// The answer to every command but `stacks`.
pub(super) fn answer(
    cmd: Command,
    sup: &dyn Supervisor,
    started: Instant,
    actions: &mut Vec<Action>,
) -> Result<Value, String> {
    let worker_json = |w: &super::WorkerView| {
        json!({
            "pid": w.pid,
            "age": w.age,
            "booted": w.booted,
            "aborted": w.aborted,
            "last_heartbeat": w.last_heartbeat,
            "requests": w.requests,
            "generation": w.generation,
            "retiring": w.retiring,
        })
    };
    let mut workers = sup.workers();
    workers.sort_by_key(|w| w.age);
    Ok(match cmd {
        Command::ShowWorkers => {
            let list: Vec<Value> = workers.iter().map(worker_json).collect();
            json!({"workers": list, "count": workers.len()})
        }
        Command::ShowAll => {
            let list: Vec<Value> = workers
                .iter()
                .map(|w| {
                    let mut v = worker_json(w);
                    v["type"] = Value::from("web");
                    v
                })
                .collect();
            json!({
                "arbiter": {"pid": sup.stats().pid, "type": "arbiter", "role": "master"},
                "web_workers": list,
                "web_worker_count": workers.len(),
                "dirty_arbiter": null,
                "dirty_workers": [],
                "dirty_worker_count": 0,
            })
        }
        Command::ShowDirty => json!({"enabled": false, "pid": null, "workers": [], "apps": []}),
        Command::ShowConfig => Value::Object(sup.config()),
        Command::ShowStats => {
            let s = sup.stats();
            let uptime = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
            json!({
                "uptime": uptime,
                "pid": s.pid,
                "workers_current": workers.len(),
                "workers_target": s.workers_target,
                "workers_spawned": s.workers_spawned,
                "workers_killed": s.workers_killed,
                "reloads": s.reloads,
                "dirty_arbiter_pid": null,
                "requests": s.requests,
                "phase": s.phase,
            })
        }
        Command::ShowListeners => {
            let list: Vec<Value> = sup
                .listeners()
                .iter()
                .map(|l| json!({"address": l.address, "fd": l.fd, "type": l.kind}))
                .collect();
            let count = list.len();
            json!({"listeners": list, "count": count})
        }
        Command::WorkerAdd(n) => {
            let old = sup.stats().workers_target;
            let total = old.saturating_add(n);
            actions.push(Action::SetWorkers(total));
            json!({"added": n, "previous": old, "total": total})
        }
        Command::WorkerRemove(n) => {
            let old = sup.stats().workers_target;
            let total = old.saturating_sub(n).max(1);
            actions.push(Action::SetWorkers(total));
            json!({"removed": old - total, "previous": old, "total": total})
        }
        Command::WorkerKill(pid) => {
            if workers.iter().any(|w| w.pid == pid) {
                actions.push(Action::KillWorker(pid));
                json!({"success": true, "killed": pid})
            } else {
                json!({"success": false, "error": format!("Worker {pid} not found")})
            }
        }
        Command::DirtyAdd | Command::DirtyRemove => {
            json!({"success": false, "error": "Dirty arbiter not running"})
        }
        Command::Reload => {
            actions.push(Action::Reload);
            json!({"status": "reloading"})
        }
        Command::Reopen => {
            actions.push(Action::Reopen);
            json!({"status": "reopening"})
        }
        Command::Shutdown(mode) => {
            actions.push(Action::Shutdown(mode));
            let name = match mode {
                super::StopMode::Graceful => "graceful",
                super::StopMode::Quick => "quick",
            };
            json!({"status": "shutting_down", "mode": name})
        }
        Command::Help => protocol::help(),
        Command::Stacks(_) => return Err("stacks is answered asynchronously".into()),
    })
}
