"""Northwind Cloud support scenarios, part 2: Object Storage, Managed Postgres, Identity.

Scenarios are (title, steps, two user phrasings); the last scenario of each product is held out for eval.
"""

from __future__ import annotations

from .northwind_ops import Scenario

PLATFORM: dict[str, list[Scenario]] = {
    "Object Storage": [
        (
            "Bucket name rejected",
            [
                "Bucket names must be 3 to 63 characters, lowercase letters, digits and hyphens only.",
                "Pick a name that matches and create the bucket again.",
            ],
            [
                "the console won't accept 'Marketing_Assets' as a bucket name.",
                "creating a bucket fails with 'invalid bucket name'.",
            ],
        ),
        (
            "Wrong storage endpoint",
            [
                "Use the endpoint https://s3.eu-1.northwind.cloud with path-style addressing.",
                "Set the region to eu-1 in your S3 client.",
            ],
            [
                "aws cli can't reach our Northwind bucket, it says could not connect to the endpoint URL.",
                "our S3 tool times out when listing the Northwind bucket.",
            ],
        ),
        (
            "Presigned link expires too soon",
            [
                "Presigned URLs last at most 7 days (604800 seconds).",
                "Generate a new link before it expires, or share through a public bucket policy instead.",
            ],
            [
                "the download links we send customers stop working after a week.",
                "I tried to make a presigned URL valid for 30 days and it failed.",
            ],
        ),
        (
            "Upload of a large object fails",
            ["Use multipart upload for objects over 5 GB.", "Single objects can be at most 5 TB."],
            [
                "uploading our 20 GB disk image to storage keeps failing.",
                "a big upload to the bucket errors out with EntityTooLarge.",
            ],
        ),
        (
            "Recovering an overwritten file",
            [
                "If versioning is on, list versions with `aws s3api list-object-versions --endpoint-url "
                "https://s3.eu-1.northwind.cloud`.",
                "Copy the previous version back over the current one.",
                "Turn versioning on under Bucket > Settings to protect future changes.",
            ],
            [
                "someone overwrote an important file in our bucket, can we get the old one back?",
                "a script replaced all our config files in storage with empty ones.",
            ],
        ),
        (
            "Storage costs higher than expected",
            [
                "Check Bucket > Metrics for old versions and incomplete multipart uploads.",
                "Add a lifecycle rule to expire old versions after 30 days and abort uploads after 7 days.",
            ],
            [
                "our storage bill doubled but we didn't add much data.",
                "why are we paying for way more storage than the bucket shows?",
            ],
        ),
    ],
    "Managed Postgres": [
        (
            "Too many database connections",
            [
                "The Standard plan allows 200 connections.",
                "Connect through the pooler on port 6432 instead of 5432.",
                "Or resize with `nwctl pg resize --plan business`.",
            ],
            [
                "our app keeps getting 'too many connections' from the Northwind Postgres database.",
                "Postgres rejects new clients during peak hours.",
            ],
        ),
        (
            "Restoring a dropped table",
            [
                "Use point-in-time restore, available for the last 7 days.",
                "In the console choose Database > Restore, pick a time before the drop, and restore to a new instance.",
                "Copy the table back with pg_dump.",
            ],
            [
                "a developer dropped the orders table by accident an hour ago.",
                "we deleted production data by mistake this morning, can we go back?",
            ],
        ),
        (
            "Database unavailable on Sunday morning",
            [
                "Maintenance runs on Sundays at 03:00 UTC and may restart the instance.",
                "Move the window under Database > Settings > Maintenance.",
            ],
            [
                "our database was down for a few minutes early Sunday.",
                "Postgres restarts every weekend around 3 AM UTC.",
            ],
        ),
        (
            "Cannot connect from a new server",
            [
                "Add the server's IP to Database > Networking > Allowed IPs.",
                "Connect on port 6432 with sslmode=require.",
            ],
            [
                "my new app server gets 'connection refused' from the Northwind database.",
                "the database works from the office but not from our new VM.",
            ],
        ),
        (
            "Database disk almost full",
            [
                "Check the largest tables with `nwctl pg top-tables`.",
                "Grow the disk with `nwctl pg resize --storage 200` (no downtime).",
            ],
            [
                "we got an alert that the database storage is at 95%.",
                "the Postgres disk is nearly full, what are our options?",
            ],
        ),
        (
            "Backups of Postgres kept only a week",
            [
                "Daily backups are kept for 7 days.",
                "For longer retention, schedule `nwctl pg export` to Object Storage.",
            ],
            [
                "I need a database backup from last month but can only see the last seven days.",
                "can we keep Postgres backups longer than a week?",
            ],
        ),
    ],
    "Identity": [
        (
            "User locked out after losing MFA device",
            [
                "An organisation admin resets MFA under Console > Users > Security.",
                "The user enrols a new device at the next sign-in.",
            ],
            [
                "one of our staff lost their phone and can't pass MFA anymore.",
                "a user replaced their phone and now Northwind sign-in asks for a code they don't have.",
            ],
        ),
        (
            "SAML sign-in fails with clock error",
            [
                "SAML assertions are accepted only within 5 minutes of clock skew.",
                "Sync the identity provider's clock with NTP and try again.",
            ],
            [
                "SSO logins fail with 'assertion not yet valid'.",
                "our SAML login broke after we moved the ADFS server, error mentions NotBefore.",
            ],
        ),
        (
            "Users signed out every day",
            [
                "Sessions last 12 hours by default.",
                "An admin can change this under Console > Identity > Session policy (up to 7 days).",
            ],
            [
                "people complain they have to log in to Northwind every morning.",
                "why does the console sign everyone out each day?",
            ],
        ),
        (
            "SCIM provisioning stopped",
            [
                "SCIM tokens expire after 365 days.",
                "Create a new token under Console > Identity > Provisioning and paste it into your identity provider.",
            ],
            [
                "new hires are no longer created automatically from Okta.",
                "user sync from Azure AD stopped working, we see 401 errors.",
            ],
        ),
        (
            "Setting up OIDC sign-in",
            [
                "Create an OIDC app in your provider with redirect URI https://login.northwind.cloud/oidc/callback.",
                "Paste the client ID and secret under Console > Identity > Providers.",
                "Test with one user before enforcing it.",
            ],
            [
                "how do we connect our Google Workspace login to Northwind?",
                "we want single sign-on with our OIDC provider, what is the redirect URL?",
            ],
        ),
        (
            "Removing a departed employee",
            [
                "Disable the user under Console > Users; this ends their sessions at once.",
                "Reassign their API keys under Console > Users > Keys before deleting the account.",
            ],
            [
                "an engineer left today, how do I cut off their access?",
                "we need to offboard a user from Northwind immediately.",
            ],
        ),
    ],
}
