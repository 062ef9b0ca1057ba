-- The schema SQLModel.metadata.create_all made before migrations (main at 532b4ff), frozen for the upgrade tests.
CREATE TABLE login_failures (
	id INTEGER NOT NULL, 
	account VARCHAR NOT NULL, 
	address VARCHAR NOT NULL, 
	at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE purges (
	id INTEGER NOT NULL, 
	at FLOAT NOT NULL, 
	"by" VARCHAR NOT NULL, 
	older_than_days FLOAT NOT NULL, 
	threads INTEGER NOT NULL, 
	messages INTEGER NOT NULL, 
	approvals INTEGER NOT NULL, 
	tool_calls INTEGER NOT NULL, 
	model_calls_detached INTEGER NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE session_cutoffs (
	user_name VARCHAR NOT NULL, 
	revoked_before FLOAT NOT NULL, 
	PRIMARY KEY (user_name)
);

CREATE TABLE users (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	password_hash VARCHAR NOT NULL, 
	role VARCHAR NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE budgets (
	user_id INTEGER NOT NULL, 
	daily_nanousd INTEGER, 
	monthly_nanousd INTEGER, 
	PRIMARY KEY (user_id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE estimate_margins (
	user_id INTEGER NOT NULL, 
	overruns INTEGER NOT NULL, 
	overrun_nanousd INTEGER NOT NULL, 
	factor_milli INTEGER NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (user_id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE model_calls (
	id INTEGER NOT NULL, 
	"key" VARCHAR NOT NULL, 
	user_id INTEGER NOT NULL, 
	thread_id VARCHAR, 
	turn_id VARCHAR NOT NULL, 
	model VARCHAR NOT NULL, 
	purpose VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	reserved_nanousd INTEGER NOT NULL, 
	cost_nanousd INTEGER NOT NULL, 
	reserved_tokens INTEGER NOT NULL, 
	input_tokens INTEGER NOT NULL, 
	output_tokens INTEGER NOT NULL, 
	cache_write_5m_tokens INTEGER NOT NULL, 
	cache_write_1h_tokens INTEGER NOT NULL, 
	cache_read_tokens INTEGER NOT NULL, 
	stop_reason VARCHAR, 
	ttft_ms FLOAT, 
	latency_ms FLOAT, 
	error VARCHAR, 
	created_at FLOAT NOT NULL, 
	day VARCHAR NOT NULL, 
	month VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE ("key"), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE threads (
	id VARCHAR NOT NULL, 
	owner_id INTEGER NOT NULL, 
	title VARCHAR NOT NULL, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE always_approve (
	thread_id VARCHAR NOT NULL, 
	tool VARCHAR NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (thread_id, tool), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE TABLE approvals (
	id VARCHAR NOT NULL, 
	thread_id VARCHAR NOT NULL, 
	tool_use_id VARCHAR NOT NULL, 
	tool VARCHAR NOT NULL, 
	args_json TEXT NOT NULL, 
	args_digest VARCHAR NOT NULL, 
	risk VARCHAR NOT NULL, 
	untrusted_sources_json VARCHAR NOT NULL, 
	route VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	requested_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	decided_at FLOAT, 
	decided_by VARCHAR, 
	decided_via VARCHAR, 
	reason VARCHAR, 
	executed_at FLOAT, 
	PRIMARY KEY (id), 
	UNIQUE (thread_id, tool_use_id), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE TABLE context_summaries (
	id INTEGER NOT NULL, 
	thread_id VARCHAR NOT NULL, 
	covers_to_seq INTEGER NOT NULL, 
	messages INTEGER NOT NULL, 
	text TEXT NOT NULL, 
	tokens INTEGER NOT NULL, 
	model VARCHAR NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE TABLE messages (
	id INTEGER NOT NULL, 
	thread_id VARCHAR NOT NULL, 
	seq INTEGER NOT NULL, 
	role VARCHAR NOT NULL, 
	content_json TEXT NOT NULL, 
	incomplete BOOLEAN NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (thread_id, seq), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE TABLE thread_deletions (
	thread_id VARCHAR NOT NULL, 
	deleted_at FLOAT NOT NULL, 
	deleted_by VARCHAR NOT NULL, 
	PRIMARY KEY (thread_id), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE TABLE tool_calls (
	id INTEGER NOT NULL, 
	thread_id VARCHAR NOT NULL, 
	tool_use_id VARCHAR NOT NULL, 
	tool VARCHAR NOT NULL, 
	args_json TEXT NOT NULL, 
	status VARCHAR NOT NULL, 
	output TEXT NOT NULL, 
	is_error BOOLEAN NOT NULL, 
	started_at FLOAT NOT NULL, 
	duration_ms FLOAT, 
	PRIMARY KEY (id), 
	UNIQUE (thread_id, tool_use_id), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE TABLE ui_steps (
	id VARCHAR NOT NULL, 
	thread_id VARCHAR NOT NULL, 
	seq FLOAT NOT NULL, 
	parent_id VARCHAR, 
	name VARCHAR NOT NULL, 
	type VARCHAR NOT NULL, 
	input TEXT NOT NULL, 
	output TEXT NOT NULL, 
	is_error BOOLEAN NOT NULL, 
	created_at VARCHAR, 
	start VARCHAR, 
	"end" VARCHAR, 
	show_input VARCHAR, 
	language VARCHAR, 
	metadata_json VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(thread_id) REFERENCES threads (id) ON DELETE CASCADE
);

CREATE VIRTUAL TABLE message_search USING fts5(text, thread_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2');

CREATE INDEX ix_login_failures_at ON login_failures (at);

CREATE INDEX ix_login_failures_account_at ON login_failures (account, at);

CREATE INDEX ix_login_failures_address_at ON login_failures (address, at);

CREATE UNIQUE INDEX ix_users_name ON users (name);

CREATE INDEX ix_model_calls_day ON model_calls (day);

CREATE INDEX ix_model_calls_turn ON model_calls (turn_id);

CREATE INDEX ix_model_calls_user_day ON model_calls (user_id, day);

CREATE INDEX ix_model_calls_thread ON model_calls (thread_id);

CREATE INDEX ix_threads_owner_updated ON threads (owner_id, updated_at);

CREATE INDEX ix_approvals_thread_status ON approvals (thread_id, status);

CREATE INDEX ix_context_summaries_thread ON context_summaries (thread_id, covers_to_seq);

CREATE INDEX ix_thread_deletions_deleted_at ON thread_deletions (deleted_at);

CREATE INDEX ix_tool_calls_thread_id ON tool_calls (thread_id);

CREATE INDEX ix_ui_steps_thread_seq ON ui_steps (thread_id, seq);

CREATE VIEW message_text AS SELECT m.id AS id, m.thread_id AS thread_id, (SELECT coalesce(group_concat(json_extract(b.value, '$.text'), ' '), '') FROM json_each(m.content_json) AS b WHERE json_extract(b.value, '$.type') = 'text') AS text FROM messages AS m;

CREATE TRIGGER message_search_ai AFTER INSERT ON messages BEGIN INSERT INTO message_search(rowid, text, thread_id) SELECT id, text, thread_id FROM message_text WHERE id = new.id; END;

CREATE TRIGGER message_search_au AFTER UPDATE OF content_json ON messages BEGIN DELETE FROM message_search WHERE rowid = old.id; INSERT INTO message_search(rowid, text, thread_id) SELECT id, text, thread_id FROM message_text WHERE id = new.id; END;

CREATE TRIGGER message_search_ad AFTER DELETE ON messages BEGIN DELETE FROM message_search WHERE rowid = old.id; END;
