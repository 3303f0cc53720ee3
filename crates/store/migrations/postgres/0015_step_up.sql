-- Step-up: a session re-confirmed with the second factor, for sensitive acts (releasing a
-- message flagged as malware). `step_up_mac` is the vault's HMAC over the session and the
-- time, so a value written by anyone else is no step-up.
ALTER TABLE user_sessions ADD COLUMN step_up_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE user_sessions ADD COLUMN step_up_mac TEXT NOT NULL DEFAULT '';
