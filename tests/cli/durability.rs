//! Durability against a real process: `handoff serve` is killed with
//! SIGKILL while leads flow and providers fail, or runs while every
//! provider is down for a minute. The emulators live in the test process,
//! so they outlive every server; the ledger is on disk, as in production.

use handoff::capabilities::{Clock, SystemClock};
use handoff::lead::LeadState;
use handoff::ledger::{Database, Instance, Roles};
use handoff_emulators::{Emulators, Settings};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running `handoff serve`, killed with SIGKILL when dropped (a failing
/// test leaves no server behind).
struct Served(Child);

impl Served {
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The log file of the servers of instance `id` (appended to by each
/// restart), so a failing test can show what the servers said.
fn log_file(dir: &tempfile::TempDir, id: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join(format!("{id}.log"))).unwrap()
}

/// The last lines each server of `dir` logged.
fn log_tails(dir: &tempfile::TempDir) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {} (last 60 of {} lines)\n", path.display(), lines.len());
            for line in &lines[lines.len().saturating_sub(60)..] {
                out += line;
                out += "\n";
            }
        }
    }
    out
}

/// What the PostgreSQL ledger's unfinished events and the database's
/// sessions look like: who holds what, and what each session waits for.
async fn postgres_activity(url: &str, schema: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let mut out = String::new();
    let claims = client
        .query(
            &format!(
                "SELECT coalesce(claimed_by, '-'), count(*)::bigint,
                    coalesce(min(lease_until - (extract(epoch from clock_timestamp()) * 1000)::bigint), 0)::bigint,
                    max(attempts)::bigint, count(next_attempt_at)::bigint
                 FROM {schema}.events WHERE finished_at IS NULL GROUP BY 1"
            ),
            &[],
        )
        .await
        .unwrap();
    for r in claims {
        out += &format!(
            "unfinished: claimed by {} x{}, lease left {} ms, attempts {}, deferred {}\n",
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3),
            r.get::<_, i64>(4)
        );
    }
    let sessions = client
        .query(
            "SELECT pid, coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''),
                left(query, 160), coalesce(extract(epoch from clock_timestamp() - xact_start), 0)::float8
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    for r in sessions {
        out += &format!(
            "session {} {} wait {}:{} xact {:.1}s: {}\n",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, f64>(5),
            r.get::<_, String>(4).replace('\n', " ")
        );
    }
    out
}

/// A sandbox org with `leads` new MQL contacts, a roster on which every rep
/// is always available, and a connector config pointing at the sandbox.
struct World {
    sandbox: Emulators,
    dir: tempfile::TempDir,
    contacts: Vec<u64>,
    listen: SocketAddr,
    /// The ledger every server of this world uses.
    database: Database,
    /// The pipelines servers run; the shipped ones when empty.
    pipelines: Vec<std::path::PathBuf>,
    /// Where servers of this world were started, for a failing test to ask
    /// the ones still up what they run.
    served_at: std::sync::Mutex<Vec<(SocketAddr, u32)>>,
}

/// The unique name each lead carries, so its DM and Salesforce lead can be
/// counted.
fn tag(i: usize) -> String {
    format!("Durable{i:04}")
}

async fn world(leads: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("data/handoff.db"));
    world_on(leads, dir, database).await
}

/// A world whose servers share a PostgreSQL ledger (a fresh schema).
async fn world_on_postgres(leads: usize) -> World {
    let url =
        std::env::var("HANDOFF_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("handoff_test_{}", std::process::id()) + &format!("_{}", SystemClock.now_ms());
    world_on(leads, tempfile::tempdir().unwrap(), Database::Postgres { url, schema }).await
}

async fn world_on(leads: usize, dir: tempfile::TempDir, database: Database) -> World {
    let settings = Settings {
        hubspot_per_ten_seconds: 0,
        hubspot_search_per_second: 0,
        slack_channel_burst: 0,
        salesforce_api_limit: u64::MAX,
        ..Default::default()
    };
    let sandbox = Emulators::start_loopback(settings, handoff_emulators::system_clock()).await.unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    handoff::demo::write_open_roster(&repo.join("pipelines"), &dir.path().join("roster.json")).unwrap();
    let config = handoff::emulated::config_toml(sandbox.http, sandbox.smtp, false);
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();

    let http = reqwest::Client::new();
    let countries = ["Germany", "United Kingdom", "United States", "Netherlands", "Canada"];
    let mut contacts = Vec::with_capacity(leads);
    for i in 0..leads {
        let properties = json!({
            "email": format!("{}@company{i}.com", tag(i).to_lowercase()), "firstname": "Dee",
            "lastname": tag(i), "company": format!("Company {i}"), "country": countries[i % countries.len()],
            "state": "NY", "numemployees": (100 + i * 37 % 3000).to_string(),
            "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
        let id = handoff_emulators::drive::create_contact(&http, sandbox.http, &properties).await.unwrap();
        contacts.push(id.parse().unwrap());
    }
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    World { sandbox, dir, contacts, listen, database, pipelines: Vec::new(), served_at: Default::default() }
}

impl World {
    async fn ledger(&self) -> Roles {
        Roles::open(&self.database, Instance::named("observer"), Arc::new(SystemClock)).await.unwrap()
    }

    /// Starts `handoff serve` on the world's port; returns once it answers.
    async fn serve(&self) -> Served {
        self.serve_as("durability-test", self.listen).await
    }

    /// Starts `handoff serve` as instance `id` on `listen`.
    async fn serve_as(&self, id: &str, listen: SocketAddr) -> Served {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // On SQLite the data dir holds the ledger; on PostgreSQL each
        // instance has its own (compiled plugins only).
        let data_dir = match &self.database {
            Database::Sqlite(path) => path.parent().unwrap().to_path_buf(),
            Database::Postgres { .. } => self.dir.path().join(format!("data-{id}")),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_handoff"));
        command
            .current_dir(&repo)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", &listen.to_string(), "--config"])
            .arg(self.dir.path().join("handoff.toml"))
            .arg("--roster")
            .arg(self.dir.path().join("roster.json"))
            .args(self.pipelines.iter().flat_map(|p| [std::ffi::OsStr::new("--pipeline"), p.as_os_str()]))
            .env("HANDOFF_INSTANCE_ID", id)
            .env("HANDOFF_WAIT_FIRST_MS", "250")
            .env("HANDOFF_WAIT_MAX_MS", "2000")
            .env("HANDOFF_LEASE_SECS", "5")
            .env_remove("HANDOFF_DATABASE_URL")
            .env("HANDOFF_LOG", "warn,handoff=info")
            .stdout(log_file(&self.dir, id))
            .stderr(log_file(&self.dir, id));
        if let Database::Postgres { url, schema } = &self.database {
            command.env("HANDOFF_DATABASE_URL", url).env("HANDOFF_DATABASE_SCHEMA", schema);
        }
        // Wrapped at once, so a server that never answers is still killed.
        let served = Served(command.spawn().unwrap());
        self.served_at.lock().unwrap().push((listen, served.0.id()));
        let health = format!("http://{listen}/healthz");
        for _ in 0..600 {
            if reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("handoff serve did not come up");
    }

    /// Sends every lead's MQL webhook from `senders` concurrent senders,
    /// each retrying (as HubSpot does) until it hears 200.
    async fn send_all(&self, senders: usize) {
        self.send_to(&[self.listen], senders).await;
    }

    /// Sends every lead's webhook to the servers at `servers` in turn,
    /// moving on to the next server when one does not answer (as a load
    /// balancer would).
    async fn send_to(&self, servers: &[SocketAddr], senders: usize) {
        let urls: Vec<String> = servers.iter().map(|s| format!("http://{s}/webhooks/hubspot")).collect();
        let now = SystemClock.now_ms();
        let queue = Arc::new(std::sync::Mutex::new(self.contacts.iter().copied().enumerate().collect::<Vec<_>>()));
        let mut tasks = Vec::new();
        for _ in 0..senders {
            let (queue, urls) = (queue.clone(), urls.clone());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                loop {
                    let Some((n, id)) = queue.lock().unwrap().pop() else { break };
                    let body = json!([{"eventId": 9_000_000 + n, "subscriptionType": "contact.propertyChange",
                        "objectId": id, "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead",
                        "occurredAt": now}])
                    .to_string();
                    for attempt in n.. {
                        let url = &urls[attempt % urls.len()];
                        match handoff_emulators::drive::send_hubspot_webhook(
                            &http,
                            url,
                            handoff_emulators::SECRET,
                            body.clone(),
                        )
                        .await
                        {
                            Ok(r) if r.status().is_success() => break,
                            _ => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// Waits until every lead is in a final state in the ledger; returns
    /// the leads.
    async fn settled(&self, within: Duration) -> Vec<handoff::lead::LeadRecord> {
        let ledger = self.ledger().await.ledger;
        let deadline = Instant::now() + within;
        loop {
            let leads = ledger.leads(None, 10_000).await.unwrap();
            if leads.len() == self.contacts.len() && leads.iter().all(|l| l.state.is_final()) {
                return leads;
            }
            let waiting: Vec<String> = leads
                .iter()
                .filter(|l| !l.state.is_final())
                .map(|l| format!("{} {}", l.id, l.state.as_str()))
                .collect();
            if Instant::now() >= deadline {
                eprintln!("{}", log_tails(&self.dir));
                let addrs = self.served_at.lock().unwrap().clone();
                for (addr, pid) in addrs {
                    if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await {
                        eprintln!("{addr} /readyz: {}", r.text().await.unwrap_or_default());
                        // What each of its threads is doing, where gdb is at hand.
                        if let Ok(out) = std::process::Command::new("gdb")
                            .args(["-batch", "-p", &pid.to_string(), "-ex", "thread apply all bt 25"])
                            .output()
                        {
                            eprintln!("threads of {pid}:\n{}", String::from_utf8_lossy(&out.stdout));
                        }
                    }
                }
                if let Database::Postgres { url, schema } = &self.database {
                    eprintln!("{}", postgres_activity(url, schema).await);
                }
                let unfinished = ledger.unfinished_events().await.unwrap();
                eprintln!(
                    "{} unfinished events, the first: {:?}",
                    unfinished.len(),
                    unfinished.iter().take(5).map(|e| (&e.pipeline, &e.event_id, &e.lead_id)).collect::<Vec<_>>()
                );
                for lead in leads.iter().filter(|l| !l.state.is_final()).take(3) {
                    let full = ledger.lead(&lead.id).await.unwrap();
                    eprintln!("{}: {:#?}", lead.id, full.map(|l| l.timeline));
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} leads recorded, {} not final: {waiting:?}",
                leads.len(),
                self.contacts.len(),
                waiting.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every lead notified, with exactly one DM and one Salesforce lead.
    async fn assert_each_handed_off_once(&self, leads: &[handoff::lead::LeadRecord]) {
        let failed: Vec<_> = leads.iter().filter(|l| l.state != LeadState::NOTIFIED).collect();
        if !failed.is_empty() {
            eprintln!("{}", log_tails(&self.dir));
            let ledger = self.ledger().await.ledger;
            for lead in failed.iter().take(3) {
                eprintln!("{}: {:#?}", lead.id, ledger.lead(&lead.id).await.unwrap().map(|l| l.timeline));
            }
        }
        assert!(failed.is_empty(), "not notified: {failed:?}");
        let world = self.sandbox.state.world();
        let dms: Vec<&str> =
            world.slack.messages.iter().filter(|m| m.recipient.is_some()).map(|m| m.text.as_str()).collect();
        let sf_leads: Vec<&str> = world.salesforce.objects["Lead"]
            .iter()
            .filter_map(|l| l.get("LastName").and_then(Value::as_str))
            .filter(|name| name.starts_with("Durable"))
            .collect();
        for i in 0..self.contacts.len() {
            let tag = tag(i);
            let dm_count = dms.iter().filter(|text| text.contains(&tag)).count();
            assert_eq!(dm_count, 1, "{tag}: {dm_count} DMs");
            let lead_count = sf_leads.iter().filter(|name| **name == tag).count();
            assert_eq!(lead_count, 1, "{tag}: {lead_count} Salesforce leads");
        }
    }

    async fn fault(&self, fault: Value) {
        let url = format!("http://{}/_sandbox/faults", self.sandbox.http);
        let response = reqwest::Client::new().post(url).json(&fault).send().await.unwrap();
        assert!(response.status().is_success(), "{fault}");
    }

    async fn clear_faults(&self) {
        let url = format!("http://{}/_sandbox/faults", self.sandbox.http);
        reqwest::Client::new().delete(url).send().await.unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn killing_the_server_while_providers_fail_loses_and_doubles_no_lead() {
    runtime().block_on(async {
        let world = world(500).await;
        // Providers fail now and then, as they do: 5xx and rate limits.
        world.fault(json!({"provider": "salesforce", "kind": {"type": "status", "status": 503}, "rate": 0.05})).await;
        world.fault(json!({"provider": "hubspot", "kind": {"type": "status", "status": 502}, "rate": 0.05})).await;
        world
            .fault(json!({"provider": "slack", "endpoint": "chat.postMessage",
            "kind": {"type": "status", "status": 429, "retry_after": 1}, "rate": 0.05}))
            .await;
        world.fault(json!({"provider": "hubspot", "kind": {"type": "status", "status": 429}, "rate": 0.03})).await;

        let server = Arc::new(tokio::sync::Mutex::new(Some(world.serve().await)));
        let sending = world.send_all(8);
        let ledger = world.ledger().await.ledger;
        let killing = async {
            // SIGKILL at varied moments while webhooks arrive and leads run;
            // counts the kills that hit unfinished work.
            let mut mid_flight = 0;
            for pause in [700_u64, 1300, 400, 2100, 900, 1600] {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let mut guard = server.lock().await;
                let mut child = guard.take().unwrap();
                let unfinished = ledger.unfinished_events().await.unwrap().len();
                child.kill();
                mid_flight += usize::from(unfinished > 0);
                *guard = Some(world.serve().await);
            }
            mid_flight
        };
        let ((), mid_flight) = tokio::join!(sending, killing);
        assert!(mid_flight >= 3, "only {mid_flight} of 6 kills found work in flight");
        // One more, after the last webhook was acknowledged, while its lead
        // may still run.
        {
            let mut guard = server.lock().await;
            guard.take().unwrap().kill();
            *guard = Some(world.serve().await);
        }

        let leads = world.settled(Duration::from_secs(300)).await;
        world.assert_each_handed_off_once(&leads).await;
    });
}

#[test]
fn leads_wait_while_every_provider_is_down_for_a_minute_then_complete() {
    runtime().block_on(async {
        let world = world(40).await;
        let child = world.serve().await;
        for provider in ["hubspot", "salesforce", "slack", "anthropic"] {
            world.fault(json!({"provider": provider, "kind": {"type": "status", "status": 503}})).await;
        }
        let down = Instant::now();
        // Webhooks are still taken: the ledger needs no provider.
        world.send_all(4).await;

        let ledger = world.ledger().await.ledger;
        let mut saw_waiting = false;
        while down.elapsed() < Duration::from_secs(60) {
            let leads = ledger.leads(None, 1000).await.unwrap();
            assert!(leads.iter().all(|l| !l.state.is_final() || l.state == LeadState::WAITING), "none fails");
            saw_waiting |= leads.iter().any(|l| l.state == LeadState::WAITING);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(saw_waiting, "leads showed as waiting during the outage");
        let waiting = ledger.leads(Some(&LeadState::WAITING), 1000).await.unwrap();
        assert!(!waiting.is_empty());
        assert!(waiting[0].timeline.is_empty() || waiting[0].timeline.iter().any(|s| s.state == LeadState::WAITING));
        let lead = ledger.lead(&waiting[0].id).await.unwrap().unwrap();
        let step = lead.timeline.iter().rev().find(|s| s.state == LeadState::WAITING).unwrap();
        assert!(step.detail.contains("next in"), "the timeline says when it runs again: {}", step.detail);

        world.clear_faults().await;
        let leads = world.settled(Duration::from_secs(120)).await;
        world.assert_each_handed_off_once(&leads).await;
        drop(child);
    });
}

#[test]
fn when_one_of_two_instances_sharing_postgres_dies_the_other_takes_its_leads_over() {
    runtime().block_on(async {
        let world = world_on_postgres(200).await;
        // Slower Salesforce keeps leads in flight long enough to be caught.
        world.fault(json!({"provider": "salesforce", "kind": {"type": "latency", "ms": 20}})).await;
        let b_listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut a = world.serve_as("instance-a", world.listen).await;
        let mut b = world.serve_as("instance-b", b_listen).await;

        let servers = [world.listen, b_listen];
        let sending = world.send_to(&servers, 8);
        let Database::Postgres { url, schema } = world.database.clone() else { unreachable!() };
        let killing = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let query =
                format!("SELECT COUNT(*) FROM {schema}.events WHERE finished_at IS NULL AND claimed_by = 'instance-a'");
            let held: i64 = client.query_one(&query, &[]).await.unwrap().get(0);
            a.kill();
            held
        };
        let ((), held_by_a) = tokio::join!(sending, killing);
        assert!(held_by_a > 0, "instance a held unfinished leads when it died");

        let leads = world.settled(Duration::from_secs(180)).await;
        world.assert_each_handed_off_once(&leads).await;

        // Instance b still polls the schema: dropping it under b's reads
        // can deadlock (PostgreSQL picks the DROP to fail).
        b.kill();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    });
}

/// The SLA ladder in seconds instead of hours (reminder at 4 s, manager at
/// 8 s, reassignment at 12 s, VP review 4 s after it), for the servers of
/// `world` to run on real time.
fn with_fast_ladder(world: &mut World) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut sla: Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("sla-enforcement.json")).unwrap()).unwrap();
    sla["nodes"][0]["config"]["steps"] = json!([
        {"after": "4s", "action": "remind"},
        {"after": "8s", "action": "notify-manager"},
        {"after": "12s", "action": "reassign"},
        {"after": "4s", "from": "reassignment", "action": "vp-review"}
    ]);
    sla.as_object_mut().unwrap().remove("$schema");
    let fast = world.dir.path().join("sla-fast.json");
    std::fs::write(&fast, sla.to_string()).unwrap();
    world.pipelines = vec![repo.join("mql-handoff.json"), fast, repo.join("slack-interactions.json")];
}

impl World {
    /// Waits until every lead's ladder has walked to VP review.
    async fn ladders_done(&self, within: Duration) {
        let ledger = self.ledger().await.ledger;
        let deadline = Instant::now() + within;
        loop {
            let leads = ledger.leads(None, 10_000).await.unwrap();
            let done = leads.iter().filter(|l| l.state.as_str() == "vp-review").count();
            if done == self.contacts.len() {
                return;
            }
            assert!(Instant::now() < deadline, "{done} of {} ladders reached VP review", self.contacts.len());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every step of every lead's ladder happened exactly once: one
    /// reminder, one word to the manager, one handover (a DM to the new rep
    /// and one to the manager), one VP review with its task.
    async fn assert_each_step_once(&self) {
        let ledger = self.ledger().await.ledger;
        let (messages, tasks): (Vec<String>, Vec<String>) = {
            let world = self.sandbox.state.world();
            let tasks = world.salesforce.objects["Task"].iter().filter_map(|t| t["Subject"].as_str().map(String::from));
            (world.slack.messages.iter().map(|m| m.text.clone()).collect(), tasks.collect())
        };
        for i in 0..self.contacts.len() {
            let tag = tag(i);
            let count = |needle: &str| messages.iter().filter(|t| t.contains(&tag) && t.contains(needle)).count();
            assert_eq!(count("Reminder"), 1, "{tag}: reminders");
            assert_eq!(count("has not touched"), 1, "{tag}: manager told");
            // To the next rep of the team, or to the queue when nobody is.
            assert_eq!(count("is yours: reassigned from") + count("needs an owner"), 1, "{tag}: handovers");
            assert_eq!(count("was reassigned from"), 1, "{tag}: manager told of the handover");
            assert_eq!(count("VP review"), 1, "{tag}: VP reviews");
            let vp_tasks = tasks.iter().filter(|s| s.contains("VP review") && s.contains(&tag)).count();
            assert_eq!(vp_tasks, 1, "{tag}: VP tasks");
            let timers = ledger.lead_timers(&self.contacts[i].to_string()).await.unwrap();
            let fired = timers.iter().filter(|t| t.state == "fired").count();
            assert_eq!(fired, 4, "{tag}: {timers:?}");
        }
    }
}

#[test]
fn ladder_steps_fire_once_through_kills_between_and_during_steps() {
    runtime().block_on(async {
        let mut world = world(30).await;
        with_fast_ladder(&mut world);
        let mut server = world.serve().await;
        world.send_all(4).await;
        world.settled(Duration::from_secs(60)).await;
        // SIGKILL between steps and while they fire: at the reminders, at
        // the manager step, and at the reassignments.
        for pause in [4_200_u64, 3_500, 4_300] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            server.kill();
            server = world.serve().await;
        }
        world.ladders_done(Duration::from_secs(120)).await;
        world.assert_each_step_once().await;
        drop(server);
    });
}

#[test]
fn ladder_timers_of_an_instance_that_dies_are_fired_by_the_other() {
    runtime().block_on(async {
        let mut world = world_on_postgres(30).await;
        with_fast_ladder(&mut world);
        let b_listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut a = world.serve_as("instance-a", world.listen).await;
        let mut b = world.serve_as("instance-b", b_listen).await;
        world.send_to(&[world.listen, b_listen], 4).await;
        world.settled(Duration::from_secs(60)).await;
        // A dies while the ladders are at their manager and reassignment
        // steps; B fires what A had claimed once A's leases expire.
        tokio::time::sleep(Duration::from_millis(8_500)).await;
        a.kill();
        world.ladders_done(Duration::from_secs(120)).await;
        world.assert_each_step_once().await;
        b.kill(); // before the schema goes (see above)
        let Database::Postgres { url, schema } = world.database.clone() else { unreachable!() };
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    });
}

/// Rejected leads re-evaluated after 6 s instead of 90 days, for the
/// servers of `world` to run on real time: the MQL handoff, Slack's buttons
/// and the recycle pipeline.
fn with_fast_recycling(world: &mut World) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut recycle: Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("rejection-recycle.json")).unwrap()).unwrap();
    recycle["nodes"][0]["config"]["reasons"]["timing"]["reevaluate_after"] = json!("6s");
    recycle.as_object_mut().unwrap().remove("$schema");
    let fast = world.dir.path().join("recycle-fast.json");
    std::fs::write(&fast, recycle.to_string()).unwrap();
    world.pipelines = vec![repo.join("mql-handoff.json"), repo.join("slack-interactions.json"), fast];
}

impl World {
    /// Every rep rejects their lead in Slack: "Timing not right".
    async fn reject_all_for_timing(&self) {
        let url = format!("http://{}/slack/interactions", self.listen);
        let payloads: Vec<Value> = {
            let world = self.sandbox.state.world();
            let slack = &world.slack;
            slack
                .messages
                .iter()
                .filter(|m| m.recipient.is_some())
                .filter_map(|m| {
                    let option = m.blocks.as_ref()?.as_array()?.iter().find_map(|b| {
                        let select = b["elements"].as_array()?.iter().find(|e| e["action_id"] == "reject_lead")?;
                        select["options"]
                            .as_array()?
                            .iter()
                            .find_map(|o| o["value"].as_str().filter(|v| v.ends_with(":timing")).map(str::to_string))
                    })?;
                    slack.block_action(m, "reject_lead", Some(&option), SystemClock.now_ms())
                })
                .collect()
        };
        assert_eq!(payloads.len(), self.contacts.len(), "one DM with Reject per lead");
        let http = reqwest::Client::new();
        for payload in payloads {
            let now = jiff::Timestamp::now().as_second();
            let response =
                handoff_emulators::drive::send_slack_interaction(&http, &url, handoff_emulators::SECRET, &payload, now)
                    .await
                    .unwrap();
            assert_eq!(response.status(), 200);
        }
    }

    /// Waits until every lead is in `state`.
    async fn all_in(&self, state: &str, within: Duration) {
        let ledger = self.ledger().await.ledger;
        let deadline = Instant::now() + within;
        loop {
            let leads = ledger.leads(None, 10_000).await.unwrap();
            let there = leads.iter().filter(|l| l.state.as_str() == state).count();
            if there == self.contacts.len() {
                return;
            }
            if Instant::now() >= deadline {
                let others: Vec<String> = leads
                    .iter()
                    .filter(|l| l.state.as_str() != state)
                    .map(|l| {
                        format!(
                            "{} {}: {:?}",
                            l.id,
                            l.state.as_str(),
                            l.timeline.iter().rev().take(4).collect::<Vec<_>>()
                        )
                    })
                    .collect();
                panic!("{there} of {} leads are {state}; the others: {others:#?}", self.contacts.len());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[test]
fn a_re_evaluation_killed_midway_hands_each_lead_back_once() {
    runtime().block_on(async {
        let mut world = world(20).await;
        with_fast_recycling(&mut world);
        let mut server = world.serve().await;
        world.send_all(4).await;
        world.settled(Duration::from_secs(60)).await;
        world.reject_all_for_timing().await;
        world.all_in("nurture", Duration::from_secs(60)).await;
        // SIGKILL as the re-evaluations fire (6 s after each rejection) and
        // while the leads they bring back are being handed off.
        for pause in [5_800_u64, 600, 900] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            server.kill();
            server = world.serve().await;
        }
        world.all_in("notified", Duration::from_secs(120)).await;
        let ledger = world.ledger().await.ledger;
        let messages: Vec<String> = {
            let sandbox = world.sandbox.state.world();
            sandbox.slack.messages.iter().filter(|m| m.recipient.is_some()).map(|m| m.text.clone()).collect()
        };
        for (i, contact) in world.contacts.iter().enumerate() {
            let tag = tag(i);
            // The first DM now reads "Rejected by ..."; the handoff after
            // the re-evaluation is the one new DM.
            let new_dms = messages.iter().filter(|t| t.contains(&tag) && t.contains("MQL: ")).count();
            assert_eq!(new_dms, 1, "{tag}: one DM after the re-evaluation, not two");
            let lead = ledger.lead(&contact.to_string()).await.unwrap().unwrap();
            let recycled = lead.timeline.iter().filter(|s| s.state.as_str() == "recycled").count();
            assert_eq!(recycled, 1, "{tag}: {:?}", lead.timeline);
        }
        drop(server);
    });
}
