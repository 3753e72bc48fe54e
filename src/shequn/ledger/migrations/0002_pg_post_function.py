"""PostgreSQL only: ``ledger_post``, the whole posting in one statement (one round trip).

Same semantics as the portable path in ``services.do_post``: insert the transaction with
``ON CONFLICT DO NOTHING`` (returns -1 when the key exists), conditional balance updates in the
order given (the caller sorts by account id), entries; refusals raise SQLSTATE ``LD001``."""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION ledger_post(p_tenant bigint, p_key text, p_kind text, p_memo text, p_ref_type text,
  p_ref_id text, p_hash text, p_at timestamptz, p_accounts bigint[], p_amounts bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_txn bigint; i int; n int;
BEGIN
  INSERT INTO ledger_transaction (tenant_id, idempotency_key, kind, memo, ref_type, ref_id, lines_hash, created_at)
  VALUES (p_tenant, p_key, p_kind, p_memo, p_ref_type, p_ref_id, p_hash, p_at)
  ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id INTO v_txn;
  IF v_txn IS NULL THEN RETURN -1; END IF;
  FOR i IN 1 .. array_length(p_accounts, 1) LOOP
    UPDATE ledger_account SET balance_fen = balance_fen + p_amounts[i]
     WHERE id = p_accounts[i] AND tenant_id = p_tenant AND (allow_negative OR balance_fen + p_amounts[i] >= 0);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
      RAISE EXCEPTION 'ledger_post refused account % amount %', p_accounts[i], p_amounts[i]
        USING ERRCODE = 'LD001', DETAIL = p_accounts[i]::text || ':' || p_amounts[i]::text;
    END IF;
  END LOOP;
  INSERT INTO ledger_entry (tenant_id, transaction_id, account_id, amount_fen, created_at)
  SELECT p_tenant, v_txn, u.a, u.m, p_at FROM unnest(p_accounts, p_amounts) AS u(a, m);
  RETURN v_txn;
END $$;
"""

DROP = ("DROP FUNCTION IF EXISTS ledger_post(bigint, text, text, text, text, text, text, timestamptz, "
        "bigint[], bigint[]);")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
