"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 03:28:49.288458
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mecc.platform.db
from sqlalchemy.dialects import postgresql
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('lookup', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('callback_hosts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('default_callback_url', sa.String(length=2048), nullable=True),
    sa.Column('webhook_secret', sa.String(length=100), nullable=False),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lookup')
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('entity', sa.String(length=20), nullable=False),
    sa.Column('entity_key', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entity_key', ['entity', 'entity_key'], unique=False)

    op.create_table('backtests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('rule_key', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('cds_clients',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('iss', sa.String(length=255), nullable=False),
    sa.Column('jwks', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('iss')
    )
    op.create_table('rule_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('body', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=True),
    sa.Column('updated_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', 'version', name='uq_rule_versions_key_version')
    )
    with op.batch_alter_table('rule_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rule_versions_key'), ['key'], unique=False)

    op.create_table('rules',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('active_version', sa.Integer(), nullable=True),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('updated_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('services',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('service_type', sa.String(length=40), nullable=False),
    sa.Column('areas', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('organisations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('self_referral', sa.Boolean(), nullable=False),
    sa.Column('contact', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('referral_url', sa.String(length=2048), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('updated_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_services_service_type'), ['service_type'], unique=False)

    op.create_table('used_jtis',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('iss', sa.String(length=255), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('exp', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('iss', 'jti', name='uq_used_jtis_iss_jti')
    )
    with op.batch_alter_table('used_jtis', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_jtis_exp'), ['exp'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('setting', sa.String(length=40), nullable=False),
    sa.Column('contact_type', sa.String(length=40), nullable=True),
    sa.Column('staff_id', sa.String(length=100), nullable=True),
    sa.Column('staff_role', sa.String(length=40), nullable=True),
    sa.Column('team', sa.String(length=100), nullable=True),
    sa.Column('person_id', sa.String(length=100), nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('callback_url', sa.String(length=2048), nullable=True),
    sa.Column('api_key_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claim_token', sa.String(length=36), nullable=True),
    sa.Column('evaluated_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'event_id', name='uq_events_source_event_id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_org_occurred', ['organisation', 'occurred_at'], unique=False)
        batch_op.create_index('ix_events_person', ['source', 'person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_person_key'), ['person_key'], unique=False)
        batch_op.create_index('ix_events_status_next', ['status', 'next_attempt_at'], unique=False)

    op.create_table('webhook_endpoints',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('api_key_id', sa.String(length=36), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('disabled_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('api_key_id', 'url', name='uq_webhook_endpoints_key_url')
    )
    op.create_table('prompts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('person_id', sa.String(length=100), nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=True),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('setting', sa.String(length=40), nullable=False),
    sa.Column('team', sa.String(length=100), nullable=True),
    sa.Column('staff_id', sa.String(length=100), nullable=True),
    sa.Column('rule_key', sa.String(length=64), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('indicator', sa.String(length=10), nullable=False),
    sa.Column('summary', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('suggestions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sources', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('contact_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'rule_key', name='uq_prompts_event_rule')
    )
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.create_index('ix_prompts_contact_at', ['contact_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_prompts_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_prompts_org_created', ['organisation', 'created_at'], unique=False)
        batch_op.create_index('ix_prompts_person', ['source', 'person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_prompts_person_key'), ['person_key'], unique=False)

    op.create_table('suppressed_matches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('rule_key', sa.String(length=64), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('reason_code', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'rule_key', name='uq_suppressed_event_rule')
    )
    with op.batch_alter_table('suppressed_matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suppressed_matches_event_id'), ['event_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('endpoint_id', sa.String(length=36), nullable=False),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('claim_token', sa.String(length=36), nullable=True),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], ),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'endpoint_id', name='uq_webhook_deliveries_event_endpoint')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_event_id'), ['event_id'], unique=False)

    op.create_table('prompt_outcomes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('prompt_id', sa.String(length=36), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('staff_id', sa.String(length=100), nullable=True),
    sa.Column('service_id', sa.String(length=100), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('recorded_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('prompt_outcomes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompt_outcomes_prompt_id'), ['prompt_id'], unique=False)

    op.create_table('push_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('prompt_id', sa.String(length=36), nullable=False),
    sa.Column('organisation', sa.String(length=16), nullable=False),
    sa.Column('team', sa.String(length=100), nullable=True),
    sa.Column('staff_id', sa.String(length=100), nullable=True),
    sa.Column('created_at', mecc.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('push_messages', schema=None) as batch_op:
        batch_op.create_index('ix_push_messages_org_id', ['organisation', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('push_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_push_messages_org_id')

    op.drop_table('push_messages')
    with op.batch_alter_table('prompt_outcomes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prompt_outcomes_prompt_id'))

    op.drop_table('prompt_outcomes')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_event_id'))
        batch_op.drop_index('ix_webhook_deliveries_due')

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('suppressed_matches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suppressed_matches_event_id'))

    op.drop_table('suppressed_matches')
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prompts_person_key'))
        batch_op.drop_index('ix_prompts_person')
        batch_op.drop_index('ix_prompts_org_created')
        batch_op.drop_index(batch_op.f('ix_prompts_event_id'))
        batch_op.drop_index('ix_prompts_contact_at')

    op.drop_table('prompts')
    op.drop_table('webhook_endpoints')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_status_next')
        batch_op.drop_index(batch_op.f('ix_events_person_key'))
        batch_op.drop_index('ix_events_person')
        batch_op.drop_index('ix_events_org_occurred')

    op.drop_table('events')
    with op.batch_alter_table('used_jtis', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_jtis_exp'))

    op.drop_table('used_jtis')
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_services_service_type'))

    op.drop_table('services')
    op.drop_table('rules')
    with op.batch_alter_table('rule_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rule_versions_key'))

    op.drop_table('rule_versions')
    op.drop_table('cds_clients')
    op.drop_table('backtests')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entity_key')

    op.drop_table('audit_log')
    op.drop_table('api_keys')
