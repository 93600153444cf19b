-- Why a grant was last suspended, resumed or terminated (the operator's words).
ALTER TABLE grants ADD COLUMN reason TEXT NOT NULL DEFAULT '';
