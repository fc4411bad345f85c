//! MongoDB, only where `mongod` and `mongosh` are installed (creation is refused with a 400
//! otherwise — never faked): `mongod --auth`, users created through the localhost exception with
//! `mongosh` reading its script (and the passwords) from stdin. Single server only.

use anyhow::{bail, Context};

use super::context::{Ctx, ADMIN_USER, APP_USER, HOST};
use crate::os;
use refract_runtime::InstanceSpec;

pub(super) async fn prepare(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    if node > 0 {
        bail!("MongoDB replica sets are not supported by the local runtime");
    }
    os::create_owned_dir(&ctx.node_dir(node), &ctx.user)?;
    Ok(os::create_owned_dir(
        &ctx.node_dir(node).join("data"),
        &ctx.user,
    )?)
}

pub(super) fn spec(ctx: &Ctx, node: usize) -> anyhow::Result<InstanceSpec> {
    let server = ctx
        .bins
        .mongod
        .as_ref()
        .context("mongod is no longer installed on this host")?;
    let dir = ctx.node_dir(node);
    let cache_gb = (ctx.plan.mongo_cache_mb as f64 / 1024.0).max(0.25);
    let args = vec![
        "--dbpath".to_string(),
        dir.join("data").display().to_string(),
        "--port".into(),
        ctx.port(node).to_string(),
        "--bind_ip".into(),
        HOST.into(),
        "--auth".into(),
        "--wiredTigerCacheSizeGB".into(),
        format!("{cache_gb:.2}"),
    ];
    ctx.server_spec(node, &server.path, args)
}

async fn mongosh(ctx: &Ctx, script: &str) -> anyhow::Result<String> {
    let shell = ctx
        .bins
        .mongosh
        .as_ref()
        .context("mongosh is not installed")?;
    let me = os::ServiceUser {
        switch: false,
        ..os::current_user()
    };
    let args = ["--quiet".to_string(), "--nodb".into()];
    os::run_as(
        &me,
        None,
        os::Setup {
            program: shell,
            args: &args,
            env: &[],
            stdin: Some(script.as_bytes()),
            cwd: &ctx.db_dir,
            timeout: super::context::LOGIN_TIMEOUT * 6,
        },
    )
    .await
}

pub(super) async fn bootstrap(ctx: &Ctx) -> anyhow::Result<()> {
    let db = ctx.database();
    let script = format!(
        "const admin = connect('mongodb://{HOST}:{port}/admin');\n\
         admin.createUser({{user: '{ADMIN_USER}', pwd: '{admin_pw}', roles: ['root']}});\n\
         admin.auth('{ADMIN_USER}', '{admin_pw}');\n\
         admin.getSiblingDB('{db}').createUser({{user: '{APP_USER}', pwd: '{app_pw}', roles: [{{role: 'dbOwner', db: '{db}'}}]}});\n",
        port = ctx.port(0),
        admin_pw = super::context::sql_password(&ctx.creds.admin)?.trim_matches('\''),
        app_pw = super::context::sql_password(&ctx.creds.app)?.trim_matches('\''),
    );
    mongosh(ctx, &script)
        .await
        .context("create the MongoDB users")?;
    Ok(())
}

pub(super) async fn check_login(ctx: &Ctx) -> anyhow::Result<String> {
    let db = ctx.database();
    let script = format!(
        "const d = connect('mongodb://{APP_USER}:{pw}@{HOST}:{port}/{db}?authSource={db}');\n\
         d.runCommand({{ping: 1}});\n\
         print('version=' + d.version());\n",
        pw = super::context::sql_password(&ctx.creds.app)?.trim_matches('\''),
        port = ctx.port(0),
    );
    let out = mongosh(ctx, &script).await?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("version=").map(str::to_string))
        .context("mongosh printed no version")
}
