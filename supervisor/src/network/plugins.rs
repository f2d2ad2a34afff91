//! Running a whole plugin list, as libcni does: ADD through each plugin in
//! order with the previous plugin's result as `prevResult`, CHECK through
//! each with the cached result, DEL through each in reverse. Each plugin's
//! stdin is its own config with the list's `name` and `cniVersion`
//! injected, `prevResult`, and `runtimeConfig` holding the capability args
//! the plugin declares (and only those).

use std::path::Path;

use serde_json::{Map, Value};

use super::conf::{ConfList, PluginConf};
use super::error::Error;
use super::exec::{Call, Command, Invoker};
use super::result::CniResult;
use super::Result;

/// What the runtime says about one attachment (libcni's RuntimeConf).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuntimeConf<'a> {
    pub(crate) container_id: &'a str,
    /// `None` when a DEL runs after the netns is gone.
    pub(crate) netns: Option<&'a Path>,
    pub(crate) ifname: &'a str,
    pub(crate) args: &'a [(String, String)],
    pub(crate) capability_args: &'a Map<String, Value>,
}

/// CNI_ARGS: `K=V` pairs joined by ';'.
pub(crate) fn cni_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The stdin of one plugin call.
pub(crate) fn plugin_stdin(
    list: &ConfList,
    plugin: &PluginConf,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Vec<u8> {
    let mut conf = plugin.raw.clone();
    conf.insert("name".into(), list.name.clone().into());
    conf.insert("cniVersion".into(), list.cni_version.clone().into());
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime: Map<String, Value> = plugin
        .capabilities
        .iter()
        .filter(|(_, on)| **on)
        .filter_map(|(cap, _)| capability_args.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    serde_json::to_vec(&Value::Object(conf)).expect("a JSON map always encodes")
}

/// Checks that every plugin of the list is installed, before anything runs.
pub(crate) fn preflight(invoker: &Invoker, list: &ConfList) -> Result<()> {
    for plugin in &list.plugins {
        invoker.find(&plugin.plugin_type)?;
    }
    Ok(())
}

fn call<'a>(command: Command, rt: &RuntimeConf<'a>, args: &'a str) -> Call<'a> {
    Call {
        command,
        container_id: rt.container_id,
        netns: rt.netns,
        ifname: rt.ifname,
        cni_args: args,
    }
}

/// ADD through every plugin; returns the last plugin's result, raw and read.
pub(crate) async fn add(
    invoker: &Invoker,
    list: &ConfList,
    rt: &RuntimeConf<'_>,
) -> Result<(Value, CniResult)> {
    let args = cni_args(rt.args);
    let mut prev: Option<Value> = None;
    let mut last = "";
    for plugin in &list.plugins {
        let stdin = plugin_stdin(list, plugin, prev.as_ref(), rt.capability_args);
        let out = invoker
            .run(&plugin.plugin_type, &call(Command::Add, rt, &args), &stdin)
            .await?;
        if out.is_null() {
            return Err(Error::PluginExec {
                plugin: plugin.plugin_type.clone(),
                command: "ADD",
                reason: "succeeded but printed no result".into(),
            });
        }
        prev = Some(out);
        last = &plugin.plugin_type;
    }
    let raw = prev.expect("a list has at least one plugin");
    let result = CniResult::from_value(&raw).map_err(|reason| Error::PluginExec {
        plugin: last.into(),
        command: "ADD",
        reason: format!("malformed result: {reason}"),
    })?;
    Ok((raw, result))
}

/// CHECK through every plugin with the cached result as `prevResult`.
pub(crate) async fn check(
    invoker: &Invoker,
    list: &ConfList,
    rt: &RuntimeConf<'_>,
    prev: &Value,
) -> Result<()> {
    let args = cni_args(rt.args);
    for plugin in &list.plugins {
        let stdin = plugin_stdin(list, plugin, Some(prev), rt.capability_args);
        invoker
            .run(
                &plugin.plugin_type,
                &call(Command::Check, rt, &args),
                &stdin,
            )
            .await?;
    }
    Ok(())
}

/// DEL through every plugin in reverse order. A plugin saying what it
/// should remove is already gone is not a failure (as containerd treats
/// libcni's DEL); the first other failure stops the DEL and is returned,
/// so the caller keeps what it needs to retry.
pub(crate) async fn del(
    invoker: &Invoker,
    list: &ConfList,
    rt: &RuntimeConf<'_>,
    prev: Option<&Value>,
) -> Result<()> {
    let args = cni_args(rt.args);
    for plugin in list.plugins.iter().rev() {
        let stdin = plugin_stdin(list, plugin, prev, rt.capability_args);
        match invoker
            .run(&plugin.plugin_type, &call(Command::Del, rt, &args), &stdin)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_gone() => {
                tracing::debug!(
                    network = %list.name,
                    id = rt.container_id,
                    plugin = %plugin.plugin_type,
                    error = %e,
                    "cni DEL: already gone"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The cached result as `prevResult` at the list's version: as stored when
/// the versions agree, converted otherwise.
pub(crate) fn prev_result_for(list: &ConfList, raw: &Value) -> Option<Value> {
    if raw.get("cniVersion").and_then(Value::as_str) == Some(list.cni_version.as_str()) {
        return Some(raw.clone());
    }
    match CniResult::from_value(raw) {
        Ok(r) => Some(r.to_value(&list.cni_version)),
        Err(e) => {
            tracing::warn!(network = %list.name, error = %e, "cached cni result unreadable; not passed on");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> ConfList {
        ConfList::from_list_bytes(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"bridge","name":"ignored","cniVersion":"0.3.1","runtimeConfig":{"stale":1}},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            Path::new("t.conflist"),
        )
        .unwrap()
    }

    fn stdin_json(
        list: &ConfList,
        i: usize,
        prev: Option<&Value>,
        caps: &Map<String, Value>,
    ) -> Value {
        serde_json::from_slice(&plugin_stdin(list, &list.plugins[i], prev, caps)).unwrap()
    }

    #[test]
    fn stdin_injects_name_version_prev_and_declared_capabilities() {
        let l = list();
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        caps.insert("bandwidth".into(), json!({"ingressRate": 1}));
        let prev = json!({"cniVersion": "1.0.0", "ips": []});

        let bridge = stdin_json(&l, 0, None, &caps);
        assert_eq!(bridge["name"], "net");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        // the plugin declares no capability: its own runtimeConfig stays as written
        assert_eq!(bridge["runtimeConfig"], json!({"stale": 1}));

        let portmap = stdin_json(&l, 1, Some(&prev), &caps);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        // declared but disabled: not passed
        assert!(portmap["runtimeConfig"].get("bandwidth").is_none());
    }

    #[test]
    fn args_join() {
        let args = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAME".to_string(), "web".to_string()),
        ];
        assert_eq!(cni_args(&args), "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(cni_args(&[]), "");
    }

    #[test]
    fn prev_result_is_converted_to_the_list_version() {
        let l = list();
        let cached = json!({"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
            "ips":[{"version":"4","address":"10.89.0.2/24","interface":0}]});
        let prev = prev_result_for(&l, &cached).unwrap();
        assert_eq!(prev["cniVersion"], "1.0.0");
        assert!(prev["ips"][0].get("version").is_none());
        let same = json!({"cniVersion":"1.0.0","custom":true});
        assert_eq!(prev_result_for(&l, &same).unwrap(), same);
        assert!(prev_result_for(&l, &json!({"cniVersion":"0.4.0","ips":"x"})).is_none());
    }
}
