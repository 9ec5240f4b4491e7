//! `gcleaner token`: API token administration, against the same database settings as `serve`.

use clap::{Args, Subcommand};
use gcleaner::config::DatabaseConfig;
use gcleaner::db::tokens;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token; the secret is printed once, alone, as the last line.
    Create {
        /// Name of the token (for listing and disabling).
        #[arg(long)]
        name: String,
        /// Tenant the token acts for (created if missing; defaults to the token's name).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Disable every token with this name.
    Disable {
        #[arg(long)]
        name: String,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let pool = gcleaner::db::connect(&args.database)?;
        gcleaner::db::migrate(&pool).await?;
        match args.action {
            TokenAction::Create { name, tenant } => {
                let tenant = tenant.unwrap_or_else(|| name.clone());
                let token = tokens::create_token(&pool, &tenant, &name).await?;
                println!("created token {name:?} for tenant {tenant:?} (shown once; store it now):");
                println!("{}", token.secret);
            }
            TokenAction::List => {
                for t in tokens::list_tokens(&pool).await? {
                    let state = if t.disabled_at.is_some() { "disabled" } else { "enabled" };
                    println!("{}\t{}\ttenant={}\t{state}\tcreated {}", t.id, t.name, t.tenant, t.created_at);
                }
            }
            TokenAction::Disable { name } => {
                let n = tokens::disable_token(&pool, &name).await?;
                println!("disabled {n} token(s) named {name:?}");
            }
        }
        Ok(())
    })
}
