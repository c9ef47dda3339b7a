//! The worker: claims the work that is due (events to resume after a crash,
//! waiting events whose time has come, events whose owner's lease expired,
//! timers whose deadline has come), keeps this instance's leases alive, runs
//! one execution per event, and settles it: the lead's steps recorded, lead
//! events raised for the pipelines that listen to them, the event finished
//! or put back to wait, ops told of a lead that failed for good. It also
//! keeps each `schedule` pipeline's next slot armed as a timer.

use super::{AppState, Finished};
use crate::lead::LeadState;
use crate::ledger::InboundEvent;
use crate::pipeline::{History, PreparedPipeline, Start, Trigger};
use crate::record::{ExecutionRecord, ExecutionStatus};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument;

/// How often the worker looks for due work in the ledger.
pub const CLAIM_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// How often the worker compares the clock with the next timer's deadline:
/// the bound on a timer's lateness beyond the ledger's own latency.
pub const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(50);
/// Timers fired per ledger transaction.
const TIMER_BATCH: usize = 256;
/// How often the schedule triggers' next slots are armed again.
const REARM_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What the worker keeps: the executions it runs.
pub(super) struct Worker {
    /// Execution ids running now, with their events (source, event id) and
    /// a handle to stop them: an execution never runs twice at once, these
    /// are the claims whose leases are renewed, and a run whose claim was
    /// lost is stopped.
    running: Mutex<HashMap<String, Run>>,
    in_flight: AtomicUsize,
    /// One permit per execution that may run at once (`max_running`); the
    /// others wait for one, first come first served.
    turns: tokio::sync::Semaphore,
    /// Set when the server stops accepting: no new work is claimed.
    stopping: AtomicBool,
}

/// A running execution.
struct Run {
    /// (source, event id).
    event: (String, String),
    stop: Option<tokio::task::AbortHandle>,
}

impl Worker {
    /// A worker that runs at most `max_running` executions at once (at
    /// least one).
    pub(super) fn new(max_running: usize) -> Self {
        Worker {
            running: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            turns: tokio::sync::Semaphore::new(max_running.clamp(1, tokio::sync::Semaphore::MAX_PERMITS)),
            stopping: AtomicBool::new(false),
        }
    }

    /// Executions in flight now: running, or waiting for their turn.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Claims nothing new from now on; what runs finishes.
    pub(super) fn stop_claiming(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn running_events(&self) -> Vec<(String, String)> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|r| r.event.clone())
            .collect()
    }
}

/// Claims what is due now (events stored before a crash or restart but
/// never finished run at once), then keeps claiming in the background.
///
/// # Errors
///
/// When the ledger cannot be read at start.
pub(super) async fn run(state: &Arc<AppState>) -> Result<()> {
    let resumed = claim_and_start(state).await.context("claiming unfinished events")?;
    if resumed > 0 {
        tracing::info!(count = resumed, "resuming events received before the last stop");
    }
    arm_schedules(state, None).await.context("arming the schedule triggers")?;
    // Timers due while every instance was down fire now, in deadline order.
    fire_timers(state).await.context("firing due timers")?;
    tokio::spawn(own_work(state.clone()));
    Ok(())
}

/// Keeps this instance's claims alive, claims the work that is due, and
/// fires timers on time. Once the server stops accepting it claims nothing
/// new, but renews what still runs until the last execution ends.
async fn own_work(state: Arc<AppState>) {
    let renew_every = state.ledger.instance().lease / 3;
    let mut renewed = Instant::now();
    let mut claimed = Instant::now();
    let mut armed = Instant::now();
    let mut next_timer = next_timer_due(&state).await;
    loop {
        tokio::time::sleep(TIMER_TICK).await;
        let stopping = state.worker.stopping.load(Ordering::SeqCst);
        if stopping && state.worker.in_flight() == 0 {
            return;
        }
        for pause in state.executor.runtime().take_pauses() {
            alert_plugin_paused(&state, &pause).await;
        }
        if !stopping && next_timer.is_some_and(|due| due <= state.clock.now_ms()) {
            if let Err(e) = fire_timers(&state).await {
                tracing::warn!(error = %e, "cannot fire due timers; trying again");
            }
            next_timer = next_timer_due(&state).await;
        }
        if claimed.elapsed() < CLAIM_EVERY {
            continue;
        }
        claimed = Instant::now();
        // A slot whose arming was lost (the instance that fired the last
        // slot died first, or the ledger refused) is armed again here:
        // slot ids are fixed, so arming twice is harmless.
        if !stopping && armed.elapsed() >= REARM_EVERY {
            armed = Instant::now();
            if let Err(e) = arm_schedules(&state, None).await {
                tracing::warn!(error = %e, "cannot arm the schedule triggers; trying again");
            }
        }
        // Timers another instance (or a plugin run here) set since.
        next_timer = next_timer_due(&state).await;
        if renewed.elapsed() >= renew_every {
            match state.ledger.renew_leases(&state.worker.running_events()).await {
                Ok(lost) => {
                    renewed = Instant::now();
                    stop_lost(&state, &lost);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot renew leases; other instances may take this one's work over");
                }
            }
        }
        if !stopping && let Err(e) = claim_and_start(&state).await {
            tracing::warn!(error = %e, "cannot claim due work; trying again");
        }
    }
}

/// When the next pending timer is due; none when there is none or the
/// ledger cannot tell (the next poll asks again).
async fn next_timer_due(state: &AppState) -> Option<i64> {
    match state.ledger.next_timer_due(Some(&state.pipeline_names())).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the next timer's deadline");
            None
        }
    }
}

/// Fires every timer due now, in deadline order, each as an event of this
/// instance; a fired `schedule` slot arms the pipeline's next slot.
async fn fire_timers(state: &Arc<AppState>) -> Result<usize> {
    let mut fired = 0;
    loop {
        let now = state.clock.now_ms();
        let events = state.ledger.fire_due_timers(now, TIMER_BATCH, Some(&state.pipeline_names())).await?;
        let batch = events.len();
        crate::telemetry::TELEMETRY.timers_fired.inc_by(batch as u64);
        let mut slots_fired = Vec::new();
        for event in events {
            tracing::debug!(timer = %event.event_id, pipeline = %event.pipeline, "timer fired");
            let Some(pipeline) = state.pipeline(&event.pipeline) else {
                // Only served pipelines' timers fire here; this one went
                // away between the query and now.
                tracing::error!(pipeline = %event.pipeline, timer = %event.event_id, "a timer's pipeline is no longer served; it runs when an instance serving it claims it");
                continue;
            };
            if event.node.is_none() && matches!(pipeline.pipeline.trigger, Trigger::Schedule { .. }) {
                slots_fired.push(pipeline.clone());
            }
            start(state.clone(), pipeline, event, History::New, Instant::now());
        }
        // The fired events run already; arming the next slots cannot hold
        // them up, and a failure to arm is retried by the periodic re-arm.
        for pipeline in slots_fired {
            if let Err(e) = arm_schedules(state, Some((&pipeline, now))).await {
                tracing::warn!(error = %e, pipeline = %pipeline.pipeline.name, "cannot arm the next schedule slot; the periodic re-arm will");
            }
        }
        fired += batch;
        if batch < TIMER_BATCH {
            return Ok(fired);
        }
    }
}

/// Arms the next slot of each `schedule` pipeline (or of one, after one of
/// its slots fired at `after`) as a timer. A slot's timer id is derived
/// from the pipeline and the slot, so however many instances arm it, it
/// exists once and fires once; a slot missed while every instance was down
/// is still pending at start and fires once then, not once per missed slot.
async fn arm_schedules(state: &AppState, only: Option<(&PreparedPipeline, i64)>) -> Result<()> {
    let now = state.clock.now_ms();
    let (pipelines, after): (Vec<&PreparedPipeline>, i64) = match only {
        Some((pipeline, fired_at)) => (vec![pipeline], fired_at.max(now)),
        None => (state.pipelines.iter().map(AsRef::as_ref).collect(), now),
    };
    let Some(timers) = state.executor.capabilities().schedule.clone() else {
        return Ok(());
    };
    for prepared in pipelines {
        let Trigger::Schedule { cron, timezone } = &prepared.pipeline.trigger else { continue };
        let zone = timezone.as_deref().map_or(Ok(jiff::tz::TimeZone::UTC), jiff::tz::TimeZone::get)?;
        let parsed = crate::pipeline::cron::Cron::parse(cron).map_err(anyhow::Error::msg)?;
        let Some(slot) = parsed.next_after(&zone, after) else {
            tracing::warn!(pipeline = %prepared.pipeline.name, %cron, "the schedule has no slot in the next five years");
            continue;
        };
        let name = &prepared.pipeline.name;
        let payload = json!({"scheduled_for": slot, "cron": cron, "label": format!("{name} at {}", crate::connectors::time::iso8601(slot))});
        let timer = crate::capabilities::Timer {
            id: format!("schedule:{name}:{slot}"),
            pipeline: name.clone(),
            node: String::new(),
            plugin: "@schedule".into(),
            at: slot,
            payload: payload.to_string(),
            key: None,
            lead_id: None,
            execution_id: String::new(),
        };
        timers.schedule(timer, None).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(())
}

/// Stops the runs of events another instance took over (this one stalled
/// past its lease): the new owner runs them, and the journal's intents
/// cover whatever this run was in the middle of.
fn stop_lost(state: &AppState, lost: &[(String, String)]) {
    if lost.is_empty() {
        return;
    }
    let running = state.worker.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for run in running.values().filter(|r| lost.contains(&r.event)) {
        tracing::warn!(event = %run.event.1, "another instance took this event over; stopping its run here");
        if let Some(stop) = &run.stop {
            stop.abort();
        }
    }
}

/// Claims the work that is due and starts it; returns how many started.
async fn claim_and_start(state: &Arc<AppState>) -> Result<usize> {
    let events = state.ledger.claim_due(256).await?;
    let count = events.len();
    if count > 0 {
        tracing::info!(count, "claimed due events: waiting ones whose time came, or ones whose owner stopped");
    }
    for event in events {
        if let Some(pipeline) = state.pipeline(&event.pipeline) {
            // Begun before (a crash, a wait, another instance's lease).
            let history = History::Resumed { since_ms: event.received_at };
            start(state.clone(), pipeline, event, history, Instant::now());
        } else {
            tracing::error!(pipeline = %event.pipeline, event = %event.event_id, "an unfinished event's pipeline is no longer served; marking it failed");
            if let Err(e) = state.ledger.finish_event(&event.source, &event.event_id, "", true).await {
                tracing::error!(error = %e, event = %event.event_id, "cannot mark the event failed");
            }
        }
    }
    Ok(count)
}

/// The execution id of an event: the same on every run of that event, so a
/// run resumed after a crash is recognised by the plugins' idempotency keys.
fn execution_id(event: &InboundEvent) -> String {
    format!("{}:{}:{}", event.pipeline, event.source, event.event_id)
}

/// Runs one stored event's execution in the background, then records the
/// lead's steps and marks the event finished. `history` says whether the
/// event was ever begun before: one just stored is [`History::New`].
pub(super) fn start(
    state: Arc<AppState>,
    prepared: Arc<PreparedPipeline>,
    event: InboundEvent,
    history: History,
    received: Instant,
) {
    let execution = execution_id(&event);
    {
        let mut running = state.worker.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if running.contains_key(&execution) {
            tracing::info!(execution = %execution, "already running; not starting it twice");
            return;
        }
        let run = Run { event: (event.source.clone(), event.event_id.clone()), stop: None };
        running.insert(execution.clone(), run);
    }
    state.worker.in_flight.fetch_add(1, Ordering::SeqCst);
    crate::telemetry::TELEMETRY.executions_in_flight.inc();
    // Count the execution down and release its id however the task ends: a
    // panic, or being stopped (even before it first runs).
    let in_flight = InFlight(state.clone());
    let running = Running { state: state.clone(), execution: execution.clone() };
    let task_state = state.clone();
    let task_execution = execution.clone();
    // On the plugin pool: the execution's node runs run in place there,
    // and never on the threads serving HTTP and timers.
    let runtime = state.executor.runtime().clone();
    let gate = state.clone();
    let task = runtime.spawn(async move {
        // Its turn, in the order executions came; the semaphore is never
        // closed. Until then the task holds only its event: the execution's
        // own future is allocated once it runs.
        let _turn = gate.worker.turns.acquire().await;
        Box::pin(async move {
            let (state, execution) = (task_state, task_execution);
            let id = event.event_id.clone();
            let lead = event.lead_id.clone();
            // A timer starts at its node with its payload as the item; anything
            // else starts at the trigger with the event.
            let (input, start) = match &event.node {
                Some(node) => (event.payload.clone(), Start::Node(node.clone())),
                None => (json!({ "event": event.payload }), Start::Trigger),
            };
            let mut record = state.executor.execute_as(&prepared, input, start, lead.clone(), execution, history).await;
            // An execution never starts before the event it handles: on a
            // clock that stands still (virtual time), a lead event's execution
            // would otherwise seem to precede the step that raised it.
            record.started_at_ms = record.started_at_ms.max(event.received_at);
            let failed = settle(&state, &prepared, &event, &record).await;
            // No longer running: a retry asked for while ops is being told
            // starts at once.
            drop(running);
            if failed {
                // The failure is in the ledger: the alerter tells ops of it.
                state.alerts.notify_one();
            }
            let total_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
            let notified_us = crate::lead::settled_at_us(&record, |node| prepared.lead_marks(node))
                .map(|at| total_us.saturating_sub(record.duration_us.saturating_sub(at)));
            // The live lead is settled; its shadows run after it, on what it read.
            let deferred = record.status == ExecutionStatus::Failed && record.retryable;
            if event.node.is_none() && !deferred {
                for shadow in state.shadows_of(&prepared.pipeline.name) {
                    run_shadow(&state, &prepared, &shadow, &event, &record).await;
                }
            }
            state.record(Finished { event_id: id, total_us, notified_us, record });
            drop(in_flight);
        })
        .await;
    });
    if let Some(run) =
        state.worker.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&execution)
    {
        run.stop = Some(task.abort_handle());
    }
}

/// How many times the worker tries to record how an execution ended before
/// it leaves the event unfinished, and the longest pause between tries.
const RECORD_ATTEMPTS: u32 = 8;
const RECORD_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `write` until the ledger takes it, trying again while it refuses (a
/// lost connection, a database at its connection limit); `None` when it
/// never did: the event must then stay unfinished, so that it runs again
/// (its effects replayed from the journal) and the lead never ends without
/// a trace.
async fn with_retries<T, F: Future<Output = Result<T>>>(event: &InboundEvent, write: impl Fn() -> F) -> Option<T> {
    let mut pause = std::time::Duration::from_millis(100);
    for attempt in 1..=RECORD_ATTEMPTS {
        match write().await {
            Ok(done) => return Some(done),
            Err(e) if attempt == RECORD_ATTEMPTS => {
                tracing::error!(error = %e, event = %event.event_id, attempts = attempt,
                    "cannot record how the execution ended; its event stays unfinished and runs again");
            }
            Err(e) => {
                tracing::warn!(error = %e, event = %event.event_id, attempt, "cannot record how the execution ended yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECORD_PAUSE_MAX);
            }
        }
    }
    None
}

/// Records how an execution ended: the lead's steps, its trace, the lead
/// events it raises and the event finished, together; or the event waiting
/// for another attempt when a provider was down. Returns whether the lead
/// failed for good (and ops should hear of it).
async fn settle(
    state: &Arc<AppState>,
    prepared: &PreparedPipeline,
    event: &InboundEvent,
    record: &ExecutionRecord,
) -> bool {
    let (facts, mut steps) = crate::lead::steps_of(record, |node| prepared.lead_marks(node));
    let failed = record.status == ExecutionStatus::Failed;
    // A provider outage or rate limit outlasted the node's retries: the
    // lead waits and runs again later (the journal keeps what is done).
    let transient = failed && record.retryable;
    if transient {
        match state.ledger.defer_event(&event.source, &event.event_id, state.waiting).await {
            Ok(Some(deferred)) => {
                // Attempt times are real time (liveness), whatever clock
                // the plugins see.
                let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
                let wait_s = ((deferred.next_attempt_ms - now).max(0) + 999) / 1000;
                if let Some(last) = steps.last_mut() {
                    last.state = LeadState::WAITING;
                    last.detail = format!(
                        "{}; attempt {} failed, next in {wait_s} s",
                        record.error.as_deref().unwrap_or("a provider is unavailable"),
                        deferred.attempts
                    );
                }
                // Unrecorded, the lead still runs again when its wait ends.
                if let Some(lead) = &event.lead_id {
                    let execution = execution_id(event);
                    with_retries(event, || state.ledger.record_steps(lead, &execution, &facts, &steps)).await;
                }
                tracing::info!(event = %event.event_id, attempts = deferred.attempts, "waiting for a provider");
                return false;
            }
            Ok(None) => tracing::warn!(event = %event.event_id, "waited too long for a provider; failing the lead"),
            Err(e) => {
                // Lost to another instance, or the ledger failed: either way
                // the claim is not renewed once this run ends, and whoever
                // holds or next claims the event runs it.
                tracing::error!(error = %e, event = %event.event_id, "cannot defer the event");
                return false;
            }
        }
    }
    let (raised, listeners) = lead_events(state, prepared, event, record);
    let settlement = crate::ledger::Settlement {
        event: (event.source.clone(), event.event_id.clone()),
        execution_id: record.execution_id.clone(),
        failed,
        trace: event.lead_id.as_ref().map(|lead_id| crate::ledger::Trace {
            execution_id: record.execution_id.clone(),
            pipeline: record.pipeline.clone(),
            lead_id: Some(lead_id.clone()),
            at: record.started_at_ms,
            decision: crate::lead::decision_from(record, &facts, &steps),
            reads: record.runs.iter().flat_map(|r| r.reads.iter().cloned()).collect(),
            effects: Vec::new(),
        }),
        lead: event.lead_id.clone().map(|lead_id| crate::ledger::LeadSteps { lead_id, facts, steps }),
        raised,
    };
    // Not recorded: the claim lapses once this run ends, and whoever claims
    // the event next runs it again.
    let Some(settled) = with_retries(event, || state.ledger.settle(&settlement)).await else { return false };
    for ((raised, new), listener) in settlement.raised.into_iter().zip(settled.raised).zip(listeners) {
        if new {
            start(state.clone(), listener, raised, History::New, Instant::now());
        }
    }
    if !settled.finished {
        tracing::warn!(event = %event.event_id, "another instance took this event over");
    }
    failed && settled.finished
}

/// Runs a shadow pipeline on the event a live execution ran for, on dry-run
/// capabilities only: its reads are answered from what the live run's
/// providers answered, its writes are recorded and dropped, its plugin
/// state lives under scopes of its own, its clock stands at the live run's
/// start. This is the only way a shadow pipeline ever runs, so it cannot
/// send anything. Its decision is kept beside the live one.
async fn run_shadow(
    state: &AppState,
    live: &PreparedPipeline,
    shadow: &Arc<PreparedPipeline>,
    event: &InboundEvent,
    record: &ExecutionRecord,
) {
    use crate::dry_run::{DryRun, Missing, ScratchState, ShadowState, Tape};
    let name = &shadow.pipeline.name;
    let plugin_state: Arc<dyn crate::capabilities::StateStore> = match &state.executor.capabilities().state {
        Some(store) => Arc::new(ShadowState::new(store.clone(), name)),
        None => Arc::new(ScratchState::default()),
    };
    let dry = DryRun {
        state: plugin_state,
        ..DryRun::new(state.executor.capabilities().roster.clone(), Missing::Unavailable)
    };
    let reads: Vec<_> = record.runs.iter().flat_map(|r| r.reads.iter().cloned()).collect();
    let clock: Arc<dyn crate::capabilities::Clock> =
        Arc::new(crate::capabilities::ManualClock::new(record.started_at_ms));
    let capabilities = dry.capabilities(Tape::from_reads(&reads), event.lead_id.as_deref(), clock);
    let executor = crate::pipeline::Executor::new(state.executor.runtime().clone(), Arc::new(capabilities));
    let input = json!({ "event": event.payload });
    let execution = format!("shadow:{name}:{}", record.execution_id);
    let shadow_record =
        executor.execute_as(shadow, input, Start::Trigger, event.lead_id.clone(), execution, History::New).await;
    let live_decision = crate::lead::decision_of(record, |node| live.lead_marks(node));
    let shadow_decision = crate::lead::decision_of(&shadow_record, |node| shadow.lead_marks(node));
    let unsent = dry.outbox.take().len();
    crate::telemetry::TELEMETRY.shadow_writes_withheld.inc_by(unsent as u64);
    let decision = crate::ledger::ShadowDecision {
        pipeline: name.clone(),
        shadows: live.pipeline.name.clone(),
        execution_id: record.execution_id.clone(),
        lead_id: event.lead_id.clone(),
        at: record.started_at_ms,
        differs: live_decision.differs(&shadow_decision),
        live: live_decision,
        shadow: shadow_decision,
    };
    if let Err(e) = state.ledger.record_shadow(&decision).await {
        tracing::warn!(error = %e, shadow = %name, execution = %record.execution_id, "cannot keep a shadow pipeline's decision");
    }
}

/// The lead events an execution raises: `lead.<state>` for each state it
/// put its lead in, to every served pipeline whose trigger listens for it,
/// with that pipeline. Each is keyed by execution, node and state and is
/// stored with the execution's end: a rerun after a crash raises none twice.
fn lead_events(
    state: &AppState,
    prepared: &PreparedPipeline,
    event: &InboundEvent,
    record: &ExecutionRecord,
) -> (Vec<InboundEvent>, Vec<Arc<PreparedPipeline>>) {
    let Some(lead) = &event.lead_id else { return (Vec::new(), Vec::new()) };
    let (_, transitions) = crate::lead::transitions(record, |node| prepared.lead_marks(node));
    let mut raised = (Vec::new(), Vec::new());
    for transition in transitions {
        let name = format!("lead.{}", transition.step.state);
        let listens = |p: &&Arc<PreparedPipeline>| match &p.pipeline.trigger {
            Trigger::Event { name: n } => *n == name,
            Trigger::Webhook { events, .. } => events.contains(&name),
            _ => false,
        };
        for listener in state.pipelines.iter().filter(listens) {
            raised.0.push(InboundEvent {
                source: "lead".into(),
                event_id: format!("{}:{}:{}", record.execution_id, transition.node, transition.step.state),
                pipeline: listener.pipeline.name.clone(),
                lead_id: Some(lead.clone()),
                payload: json!({
                    "name": name, "lead_id": lead, "state": transition.step.state, "at": transition.step.at,
                    "detail": transition.step.detail, "item": transition.item,
                }),
                received_at: transition.step.at,
                node: None,
            });
            raised.1.push(listener.clone());
        }
    }
    raised
}

/// Tells the ops channel that a plugin's circuit breaker paused it.
async fn alert_plugin_paused(state: &AppState, pause: &crate::runtime::PluginPause) {
    let (Some(channel), Some(chat)) = (&state.ops_channel, state.executor.capabilities().chat.clone()) else {
        return;
    };
    let text = format!(
        ":no_entry: Plugin `{}` is paused for {} s: {} (last at node `{}`). Leads that need it wait and run again when it is back; if it keeps failing, fix or replace the plugin.",
        pause.plugin,
        pause.pause_ms / 1000,
        pause.reason,
        pause.last_node
    );
    if let Err(e) =
        chat.post(channel, &text, None, None).instrument(tracing::info_span!("ops_alert", plugin = %pause.plugin)).await
    {
        tracing::error!(error = %e, plugin = %pause.plugin, "cannot alert the ops channel");
    }
}

/// Marks an execution no longer running when dropped, however its task
/// ended; what the ledger still holds of an execution that was not settled
/// (one waiting for a provider, or stopped) is written for its next run.
struct Running {
    state: Arc<AppState>,
    execution: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.ledger.release(&self.execution);
        self.state.worker.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.execution);
    }
}

/// Counts an execution as in flight until dropped.
struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.worker.in_flight.fetch_sub(1, Ordering::SeqCst);
        crate::telemetry::TELEMETRY.executions_in_flight.dec();
    }
}
