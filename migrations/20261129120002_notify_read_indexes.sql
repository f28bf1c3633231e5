-- `[[notify]]` reads each source from a little before the last record it delivered (see
-- crates/daemon/src/notify.rs, LOOKBACK), not from the target's first day: these indexes make
-- that read proportional to the recent records, not to the log's history (measured: 80 ms a
-- poll, once a second, at 100,000 stops delivered). Indexes only: no record changes.
CREATE INDEX stop_outcomes_at ON stop_outcomes(at);
CREATE INDEX gate_outcomes_at ON gate_outcomes(at);
CREATE INDEX sweep_results_finished ON sweep_results(finished_at);
CREATE INDEX exemptions_created ON exemptions(created_at);
CREATE INDEX exemption_revocations_at ON exemption_revocations(at);
