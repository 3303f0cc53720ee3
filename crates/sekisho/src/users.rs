//! `sekisho user`: portal accounts. Invitations are one-time links made by the vault; nobody
//! (the operator included) ever sets or sees another person's password or second factor.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Invite a person: prints a one-time enrolment link (valid 72 h) to send them. They set
    /// their password and second factor (TOTP) themselves.
    Invite {
        /// Their e-mail address (the login name).
        #[arg(long)]
        email: String,
        /// operator, auditor, tenant-admin or user.
        #[arg(long)]
        role: proto::Role,
        /// Their tenant (tenant-admin and user).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// While no account exists: a new first-operator enrolment link (valid 24 h), voiding
    /// the one printed at first start (lost, or printed by another node of a cluster).
    FirstLink,
    /// List the portal accounts.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// The portal's base URL as people reach it (from the configured listener).
pub(crate) fn portal_url(cfg: &Config) -> String {
    match (cfg.portal_listen, &cfg.portal_origin) {
        (Some(a), Some(o)) => o.public_url(a.port()),
        _ => "https://<portal>".into(),
    }
}

pub async fn user(cfg: Config, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Invite {
            email,
            role,
            tenant,
        } => {
            let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
            let req = proto::vault::Request::Admin(proto::vault::Admin::Invite {
                email: email.clone(),
                role,
                tenant,
                principal: crate::cli_principal(),
            });
            match vault.call(&req, &[]).await? {
                (proto::vault::Response::Enrolment { token }, _) => {
                    println!(
                        "invited {email} as {role}; send them this one-time link (valid 72 h):"
                    );
                    println!("{}/enrol#{token}", portal_url(&cfg));
                }
                (other, _) => bail!("unexpected answer from the vault: {}", other.kind()),
            }
        }
        UserCmd::FirstLink => {
            let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
            let req = proto::vault::Request::Admin(proto::vault::Admin::FirstLink {
                principal: crate::cli_principal(),
            });
            match vault.call(&req, &[]).await? {
                (proto::vault::Response::Enrolment { token }, _) => {
                    println!(
                        "enrol the first operator (login name `operator`) with this one-time link (valid 24 h; earlier ones no longer work):"
                    );
                    println!("{}/enrol#{token}", portal_url(&cfg));
                }
                (other, _) => bail!("unexpected answer from the vault: {}", other.kind()),
            }
        }
        UserCmd::List { tenant, json } => {
            let store = crate::serve::open_store(&cfg).await?;
            let tenant_id = match &tenant {
                Some(t) => Some(store.tenant_id(t).await?),
                None => None,
            };
            let users = store.user_list(tenant_id).await?;
            let invited = store
                .invitations_pending(tenant_id, store::unix_now())
                .await?;
            if json {
                let doc = serde_json::json!({ "accounts": users, "invitations": invited });
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            if users.is_empty() && invited.is_empty() {
                println!("no portal accounts and no pending invitations");
            }
            for u in users {
                println!(
                    "{} {} {} {}",
                    u.email,
                    u.role,
                    u.tenant.as_deref().unwrap_or("-"),
                    if u.active { "active" } else { "enrolling" }
                );
            }
            for i in invited {
                println!(
                    "{} {} {} invited by {} (link valid until {})",
                    i.email,
                    i.role,
                    i.tenant.as_deref().unwrap_or("-"),
                    i.invited_by,
                    proto::verdict::rfc2822(i.expires_at)
                );
            }
        }
    }
    Ok(())
}
