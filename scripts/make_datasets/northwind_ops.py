"""Northwind Cloud support scenarios, part 1: Backup Agent, VPN Gateway, Billing Portal.

Scenarios are (title, steps, two user phrasings); the last scenario of each product is held out for eval.
"""

from __future__ import annotations

Scenario = tuple[str, list[str], list[str]]

OPS: dict[str, list[Scenario]] = {
    "Backup Agent": [
        (
            "Backup agent stuck at 0%",
            [
                "Check that outbound port 7443 is open to backup.northwind.cloud.",
                "Restart the agent with `sudo systemctl restart nwbackup`.",
                "Run `nwbackup status` and confirm the job shows Running.",
            ],
            [
                "my Northwind backup job has been sitting at 0% for hours.",
                "the backup agent never gets past 0 percent on our file server.",
            ],
        ),
        (
            "Backup agent cannot find its config",
            [
                "The agent reads its settings from /etc/nwbackup/agent.yaml; restore that file.",
                "Make sure it is owned by root and readable only by root (mode 600).",
                "Restart with `sudo systemctl restart nwbackup`.",
            ],
            [
                "the backup agent says 'config not found' when it starts.",
                "after a cleanup the Northwind backup service refuses to start, something about a missing config file.",
            ],
        ),
        (
            "Old backups disappearing",
            [
                "Backups are kept for 30 days by default.",
                "Raise `retention_days` in /etc/nwbackup/agent.yaml (up to 365).",
                "Restart the agent so the new retention applies.",
            ],
            [
                "our backups older than a month are gone. Did someone delete them?",
                "I can't find the backup from six weeks ago in the restore list.",
            ],
        ),
        (
            "Large file skipped by backup agent",
            [
                "The agent skips single files larger than 50 GB.",
                "Split the file or move it to Object Storage and back it up from there.",
            ],
            [
                "one big database dump never shows up in our backups.",
                "the backup report says 'skipped' for our 80 GB video archive.",
            ],
        ),
        (
            "Verifying the last backup",
            [
                "Run `nwbackup verify --last` on the server.",
                "A healthy backup ends with 'verify: OK'; anything else, send us the log at "
                "/var/log/nwbackup/agent.log.",
            ],
            [
                "how do I check that last night's backup is actually usable?",
                "our auditor wants proof that the latest backup can be restored.",
            ],
        ),
        (
            "Backups running at the wrong time",
            [
                "Scheduled backups run at 02:00 UTC, not local time.",
                'Set `schedule: "02:00 Europe/Berlin"` (or your zone) in /etc/nwbackup/agent.yaml.',
                "Restart the agent.",
            ],
            [
                "the nightly backup kicks off in the middle of our business day.",
                "backups are starting at 4 in the morning local time instead of 2.",
            ],
        ),
    ],
    "VPN Gateway": [
        (
            "VPN clients cannot connect",
            [
                "The gateway listens on UDP port 51820; allow it in your firewall.",
                "Check the peer is enabled in the console at vpn.northwind.cloud.",
                "Reconnect the client.",
            ],
            [
                "none of our laptops can connect to the Northwind VPN gateway since the firewall change.",
                "the VPN client just keeps saying 'handshake did not complete'.",
            ],
        ),
        (
            "VPN profile expired",
            [
                "Client profiles expire after 90 days.",
                "Issue a new one with `nwvpn reissue <user>` or from the console at vpn.northwind.cloud.",
                "Import the new profile on the device.",
            ],
            [
                "my VPN profile stopped working today, it was set up about three months ago.",
                "the VPN app says my profile is no longer valid.",
            ],
        ),
        (
            "Slow or stalling VPN transfers",
            ["Set the client MTU to 1380, the gateway's supported value.", "Reconnect and test the transfer again."],
            [
                "small pages load over the VPN but big downloads stall halfway.",
                "file copies over the VPN freeze while ping still works.",
            ],
        ),
        (
            "Cannot add more VPN peers",
            ["Each gateway supports at most 250 peers.", "Add a second gateway in the console and move a team to it."],
            [
                "the VPN console refuses to add any new users.",
                "we get 'peer limit reached' when onboarding new staff to the VPN.",
            ],
        ),
        (
            "VPN admin console locked out",
            [
                "Console access needs MFA through Northwind Identity.",
                "Ask another organisation admin to reset your MFA under Console > Users > Security.",
                "Sign in again at vpn.northwind.cloud.",
            ],
            [
                "I can't get into the VPN admin console anymore, my phone with the authenticator was replaced.",
                "lost my MFA device and now the VPN admin page won't let me in.",
            ],
        ),
        (
            "Split tunnelling not working",
            [
                "Add only your office ranges to AllowedIPs in the client profile instead of 0.0.0.0/0.",
                "Re-import the profile and reconnect.",
            ],
            [
                "all my internet traffic goes through the VPN, I only want office traffic to.",
                "how do I stop the VPN from routing Netflix and everything else through the office?",
            ],
        ),
    ],
    "Billing Portal": [
        (
            "Updating the payment card",
            [
                "Sign in at billing.northwind.cloud.",
                "Go to Billing > Payment methods and add the new card.",
                "Set it as default and remove the old one.",
            ],
            [
                "our company card changed, where do I put the new one?",
                "I need to replace the expired credit card on our account.",
            ],
        ),
        (
            "Payment failed",
            [
                "We retry a failed payment automatically after 3 days.",
                "To pay now, open the invoice at billing.northwind.cloud and choose Pay now.",
            ],
            [
                "we got an email that our payment failed. Will our service be cut off?",
                "the invoice shows 'payment failed' but the card is fine.",
            ],
        ),
        (
            "Adding a VAT ID to invoices",
            [
                "Open Settings > Tax at billing.northwind.cloud.",
                "Enter the VAT ID; it appears on invoices issued from then on.",
            ],
            [
                "our invoices are missing our VAT number.",
                "accounting needs our VAT ID printed on the Northwind invoices.",
            ],
        ),
        (
            "Refund request",
            [
                "Refunds are possible within 14 days of the charge.",
                "Open the invoice at billing.northwind.cloud and choose Request refund with a short reason.",
            ],
            [
                "we were charged for a plan we cancelled last week, can we get the money back?",
                "I upgraded by mistake yesterday and want a refund.",
            ],
        ),
        (
            "When invoices are issued",
            [
                "Invoices are issued on the 1st of each month for the previous month's usage.",
                "They are emailed to the billing contact set under Settings > Contacts.",
            ],
            ["when will I get this month's invoice?", "nobody on our team received an invoice, when are they sent?"],
        ),
        (
            "Invoice sent to the wrong person",
            [
                "Invoices go to the billing contact under Settings > Contacts at billing.northwind.cloud.",
                "Change it there; the next invoice goes to the new address.",
            ],
            [
                "our invoices still go to someone who left the company.",
                "how do I change who receives the Northwind invoices?",
            ],
        ),
    ],
}
