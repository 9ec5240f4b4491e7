//! `gcleaner migrate`: applies the database migrations and exits.

use gcleaner::config::DatabaseConfig;

pub fn run(config: DatabaseConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let pool = gcleaner::db::connect(&config)?;
        gcleaner::db::migrate(&pool).await?;
        println!("database migrations applied");
        Ok(())
    })
}
