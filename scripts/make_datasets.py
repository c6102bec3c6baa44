"""Generate the bundled sample datasets in data/ deterministically (fixed seed), so they can be rebuilt and reviewed.

Run: ``python -m scripts.make_datasets`` (writes data/sample.jsonl, data/text.jsonl, data/support_train.jsonl,
data/support_eval.jsonl). Every answer is computed from the facts tables below, so the data is correct, not noise.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from tools.core.paths import BUNDLED_DATA_DIR

SEED = 20240611
SIGNOFF = "— Northwind Support"

# country, capital, continent, official language, currency
COUNTRIES = [
    ("France", "Paris", "Europe", "French", "the euro"),
    ("Germany", "Berlin", "Europe", "German", "the euro"),
    ("Italy", "Rome", "Europe", "Italian", "the euro"),
    ("Spain", "Madrid", "Europe", "Spanish", "the euro"),
    ("Portugal", "Lisbon", "Europe", "Portuguese", "the euro"),
    ("Poland", "Warsaw", "Europe", "Polish", "the złoty"),
    ("Sweden", "Stockholm", "Europe", "Swedish", "the Swedish krona"),
    ("Norway", "Oslo", "Europe", "Norwegian", "the Norwegian krone"),
    ("Greece", "Athens", "Europe", "Greek", "the euro"),
    ("Ireland", "Dublin", "Europe", "Irish and English", "the euro"),
    ("Japan", "Tokyo", "Asia", "Japanese", "the yen"),
    ("South Korea", "Seoul", "Asia", "Korean", "the won"),
    ("India", "New Delhi", "Asia", "Hindi and English", "the Indian rupee"),
    ("Thailand", "Bangkok", "Asia", "Thai", "the baht"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese", "the dong"),
    ("Indonesia", "Jakarta", "Asia", "Indonesian", "the rupiah"),
    ("Turkey", "Ankara", "Asia and Europe", "Turkish", "the Turkish lira"),
    ("Egypt", "Cairo", "Africa", "Arabic", "the Egyptian pound"),
    ("Kenya", "Nairobi", "Africa", "Swahili and English", "the Kenyan shilling"),
    ("Nigeria", "Abuja", "Africa", "English", "the naira"),
    ("Morocco", "Rabat", "Africa", "Arabic and Berber", "the dirham"),
    ("Ghana", "Accra", "Africa", "English", "the cedi"),
    ("Canada", "Ottawa", "North America", "English and French", "the Canadian dollar"),
    ("Mexico", "Mexico City", "North America", "Spanish", "the Mexican peso"),
    ("Cuba", "Havana", "North America", "Spanish", "the Cuban peso"),
    ("Brazil", "Brasília", "South America", "Portuguese", "the real"),
    ("Argentina", "Buenos Aires", "South America", "Spanish", "the Argentine peso"),
    ("Chile", "Santiago", "South America", "Spanish", "the Chilean peso"),
    ("Peru", "Lima", "South America", "Spanish and Quechua", "the sol"),
    ("Colombia", "Bogotá", "South America", "Spanish", "the Colombian peso"),
    ("Australia", "Canberra", "Oceania", "English", "the Australian dollar"),
    ("New Zealand", "Wellington", "Oceania", "English and Māori", "the New Zealand dollar"),
]

GLOSSARY = [
    (
        "photosynthesis",
        "Photosynthesis is the process plants, algae and some bacteria use to turn light into chemical energy. "
        "Using sunlight, they combine carbon dioxide and water into glucose and release oxygen as a by-product.",
    ),
    (
        "inflation",
        "Inflation is the general rise in prices over time, which means each unit of money buys less. "
        "Central banks usually try to keep it low and stable, often around two percent a year.",
    ),
    (
        "a database index",
        "A database index is a separate data structure, usually a B-tree, that lets the database "
        "find rows without scanning the whole table. It speeds up reads but makes writes slightly slower.",
    ),
    (
        "an API",
        "An API (application programming interface) is a set of rules that lets one program ask another for "
        "data or actions. Web APIs usually accept HTTP requests and answer with JSON.",
    ),
    (
        "machine learning",
        "Machine learning is a way of building software that learns patterns from examples instead "
        "of following hand-written rules. A model is trained on data and then used to make predictions.",
    ),
    (
        "overfitting",
        "Overfitting happens when a model memorises its training data instead of learning general "
        "patterns. It scores well on the examples it has seen and poorly on new ones; more data, regularisation or "
        "early stopping help.",
    ),
    (
        "a compiler",
        "A compiler translates source code written in a programming language into machine code or another "
        "lower-level form before the program runs.",
    ),
    (
        "DNS",
        "DNS, the Domain Name System, translates human-readable names such as example.com into the IP addresses "
        "computers use to reach each other. It works like a distributed phone book.",
    ),
    (
        "encryption",
        "Encryption scrambles data with a key so that only someone holding the right key can read it. "
        "It protects messages in transit and files at rest.",
    ),
    (
        "a black hole",
        "A black hole is a region of space where gravity is so strong that nothing, not even light, can "
        "escape. Most form when very massive stars collapse at the end of their lives.",
    ),
    (
        "the water cycle",
        "The water cycle is the continuous movement of water on Earth. Water evaporates, condenses "
        "into clouds, falls as rain or snow, and flows back to rivers and oceans.",
    ),
    (
        "a recession",
        "A recession is a significant decline in economic activity lasting more than a few months. "
        "It is often defined as two consecutive quarters of falling GDP.",
    ),
    (
        "version control",
        "Version control records changes to files over time so you can see who changed what, go back "
        "to earlier versions and work on the same code in parallel. Git is the most widely used system.",
    ),
    (
        "latency",
        "Latency is the delay between a request and its response. In networking it is usually measured in "
        "milliseconds.",
    ),
    (
        "a vaccine",
        "A vaccine trains the immune system to recognise a germ without causing the disease. It contains a "
        "weakened, inactivated or partial form of the germ, or instructions for making one of its proteins.",
    ),
    (
        "biodiversity",
        "Biodiversity is the variety of life in a place: the number of species, the genetic differences "
        "within them and the range of ecosystems they form.",
    ),
    (
        "a neural network",
        "A neural network is a model made of layers of simple units that each compute a weighted sum "
        "of their inputs. Training adjusts the weights so the network maps inputs to the right outputs.",
    ),
    (
        "compound interest",
        "Compound interest is interest earned on both the original amount and the interest already "
        "added. Over many years it makes savings grow much faster than simple interest.",
    ),
    (
        "a firewall",
        "A firewall is a system that filters network traffic according to rules, allowing trusted "
        "connections and blocking the rest.",
    ),
    (
        "plate tectonics",
        "Plate tectonics is the theory that Earth's outer shell is split into large plates that move "
        "slowly over the mantle. Their collisions and separations cause earthquakes, volcanoes and mountain ranges.",
    ),
    (
        "a container",
        "A container packages an application with its libraries and settings so it runs the same way on "
        "any machine. Containers share the host's kernel, which makes them lighter than virtual machines.",
    ),
    (
        "supply and demand",
        "Supply and demand describes how prices are set in a market. When demand rises and supply "
        "stays the same, prices go up; when supply rises and demand stays the same, prices fall.",
    ),
    (
        "a hash function",
        "A hash function turns data of any size into a fixed-size value. The same input always gives "
        "the same output, and good hash functions make collisions rare.",
    ),
    (
        "recursion",
        "Recursion is when a function solves a problem by calling itself on a smaller version of the same "
        "problem, until it reaches a simple base case.",
    ),
    (
        "the greenhouse effect",
        "The greenhouse effect is the warming of a planet's surface by gases such as carbon "
        "dioxide and methane, which let sunlight in but trap part of the heat radiated back.",
    ),
    (
        "a load balancer",
        "A load balancer spreads incoming requests across several servers so no single server is "
        "overwhelmed, and it stops sending traffic to servers that fail their health checks.",
    ),
    (
        "gradient descent",
        "Gradient descent is an optimisation method that repeatedly nudges a model's parameters in "
        "the direction that reduces its error. The learning rate sets the size of each step.",
    ),
    (
        "an operating system",
        "An operating system manages a computer's hardware and runs programs on top of it. It "
        "handles memory, files, processes and devices; Linux, Windows and macOS are examples.",
    ),
    (
        "a sonnet",
        "A sonnet is a poem of fourteen lines with a fixed rhyme scheme, usually written in iambic pentameter.",
    ),
    (
        "osmosis",
        "Osmosis is the movement of water through a semi-permeable membrane from a region of low solute "
        "concentration to one of high concentration.",
    ),
    (
        "a mortgage",
        "A mortgage is a loan used to buy property, with the property itself as security. The borrower "
        "repays it in instalments over many years, usually with interest.",
    ),
    (
        "caching",
        "Caching keeps copies of frequently used data in a faster place, such as memory, so later requests "
        "can be answered without repeating slow work.",
    ),
]

INFORMAL_TO_FORMAL = [
    ("hey, can u send me the report asap?", "Hello, could you please send me the report as soon as possible?"),
    ("gonna be late, traffic is crazy", "I will be arriving late because of heavy traffic."),
    ("thx for the help yesterday!!", "Thank you for your help yesterday."),
    ("the meeting got moved to tmrw", "The meeting has been rescheduled to tomorrow."),
    ("i dunno if the server is up", "I am not sure whether the server is running."),
    ("can't make it friday, sorry", "Unfortunately, I will not be able to attend on Friday."),
    ("pls check the numbers again, they look off", "Please review the figures again; they appear to be incorrect."),
    ("we're totally out of printer paper lol", "We have run out of printer paper."),
    ("ur invoice is overdue btw", "Please note that your invoice is overdue."),
    ("the new guy starts monday, be nice", "Our new colleague starts on Monday; please make him feel welcome."),
    ("that demo was awesome, great job", "The demonstration was excellent. Well done."),
    ("need the keys back by 5", "Please return the keys by five o'clock."),
    ("the app keeps crashing, super annoying", "The application crashes repeatedly, which is very frustrating."),
    ("lemme know when ur free to chat", "Please let me know when you are available to talk."),
    (
        "budget's tight so no new laptops this yr",
        "Because the budget is limited, we will not buy new laptops this year.",
    ),
    ("yeah the fix works now", "I can confirm that the fix now works."),
]

SHORTEN = [
    (
        "In order to be able to complete the project on time, we will need to hire at least two more developers.",
        "To finish on time, we need at least two more developers.",
    ),
    (
        "Due to the fact that it was raining heavily, the outdoor concert was cancelled by the organisers.",
        "The organisers cancelled the outdoor concert because of heavy rain.",
    ),
    (
        "At this point in time, we are not currently in a position to offer any refunds to customers.",
        "We cannot offer refunds right now.",
    ),
    (
        "The report that was written by the finance team contains a large number of errors that need fixing.",
        "The finance team's report has many errors to fix.",
    ),
    (
        "It is absolutely essential that all employees make sure to lock their screens when they leave their desks.",
        "Employees must lock their screens when leaving their desks.",
    ),
    (
        "We would like to take this opportunity to thank each and every one of you for your hard work this year.",
        "Thank you all for your hard work this year.",
    ),
    (
        "The new software update, which was released last week, has made the application run a lot faster than before.",
        "Last week's update made the application much faster.",
    ),
    (
        "In the event that the alarm goes off, please proceed calmly to the nearest available emergency exit.",
        "If the alarm sounds, calmly go to the nearest exit.",
    ),
]

CATEGORIES = {
    "fruits that are usually red": [
        "strawberries",
        "cherries",
        "raspberries",
        "red apples",
        "pomegranates",
        "cranberries",
        "watermelon flesh",
    ],
    "programming languages": ["Python", "JavaScript", "Rust", "Go", "Java", "C", "Kotlin", "Ruby", "Swift"],
    "musical instruments with strings": [
        "violin",
        "guitar",
        "cello",
        "harp",
        "double bass",
        "viola",
        "banjo",
        "mandolin",
    ],
    "planets in the solar system": ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"],
    "birds that cannot fly": ["ostrich", "emu", "penguin", "kiwi", "cassowary", "kakapo", "rhea"],
    "renewable energy sources": [
        "solar power",
        "wind power",
        "hydroelectric power",
        "geothermal energy",
        "tidal energy",
        "biomass",
    ],
    "vegetables rich in fibre": [
        "broccoli",
        "carrots",
        "Brussels sprouts",
        "artichokes",
        "peas",
        "sweet potatoes",
        "beetroot",
    ],
    "noble gases": ["helium", "neon", "argon", "krypton", "xenon", "radon"],
    "things to pack for a hiking trip": [
        "water",
        "a map",
        "sunscreen",
        "a rain jacket",
        "snacks",
        "a first-aid kit",
        "a headlamp",
        "sturdy boots",
    ],
    "common HTTP methods": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    "primary colours of light": ["red", "green", "blue"],
    "Shakespeare plays": [
        "Hamlet",
        "Macbeth",
        "Othello",
        "King Lear",
        "The Tempest",
        "Twelfth Night",
        "Romeo and Juliet",
    ],
}

TIPS = [
    (
        "Give three tips for sleeping better.",
        "1. Go to bed and wake up at the same time every day.\n2. Keep the bedroom dark, quiet and cool.\n"
        "3. Avoid screens and caffeine in the hour before bed.",
    ),
    (
        "How can I make my presentations more engaging?",
        "Start with a question or a short story, keep slides to one idea each, and use pictures instead of long text. "
        "Rehearse out loud, and leave time at the end for questions.",
    ),
    (
        "Suggest some ways to reduce household energy use.",
        "1. Switch to LED bulbs.\n2. Turn the heating down by one degree.\n3. Unplug chargers and devices on standby.\n"
        "4. Wash clothes at 30 °C and dry them on a line.",
    ),
    (
        "What should I do before a job interview?",
        "Research the company, reread the job description, and prepare two or three examples of your past work. "
        "Plan your route, and prepare a few questions to ask the interviewer.",
    ),
    (
        "Give me tips for writing clear emails.",
        "Put the request in the first sentence, keep paragraphs short, and use a subject line that says what the "
        "email is about. Read it once more before sending.",
    ),
    (
        "How do I start learning to code?",
        "Pick one beginner-friendly language such as Python, follow a structured course, and build small projects "
        "that interest you. Practise a little every day rather than a lot once a week.",
    ),
    (
        "List some good habits for staying focused while working from home.",
        "1. Keep a dedicated workspace.\n2. Plan the day's three most important tasks each morning.\n"
        "3. Silence notifications during focus blocks.\n4. Take short breaks away from the screen.",
    ),
    (
        "How can I keep my passwords safe?",
        "Use a password manager, make every password long and unique, and turn on two-factor authentication "
        "wherever it is offered. Never reuse your email password anywhere else.",
    ),
    (
        "Give advice for someone running their first 5 km race.",
        "Start slower than you think you need to, and keep an even pace. Eat a light meal two to three hours before, "
        "and do not try new shoes on race day.",
    ),
    (
        "What are some ways to save money on groceries?",
        "Plan meals for the week and shop with a list, buy store brands, and check unit prices. Cook larger batches "
        "and freeze portions so less food is wasted.",
    ),
    (
        "How do I take care of a houseplant?",
        "Water it when the top few centimetres of soil are dry, give it bright indirect light, and make sure the pot "
        "drains. Feed it lightly in spring and summer.",
    ),
    (
        "Suggest a simple weekly exercise routine for a beginner.",
        "Walk briskly for 30 minutes on three days, do two short strength sessions with squats, push-ups and planks, "
        "and stretch for ten minutes after each session. Rest at least one day a week.",
    ),
]

REVIEW_POS = [
    "arrived two days early",
    "works exactly as described",
    "the battery lasts all week",
    "setup took five minutes",
    "the staff were friendly and quick",
    "the sound quality is superb",
    "it feels solid and well made",
    "great value for the price",
    "the food was delicious",
]
REVIEW_NEG = [
    "stopped working after a week",
    "the box was damaged and parts were missing",
    "customer service never replied",
    "it is much smaller than the photos suggest",
    "the app crashes every time I open it",
    "the room smelled of smoke",
    "we waited an hour for a table",
    "the instructions are impossible to follow",
    "it overheats after ten minutes",
]
REVIEW_THINGS = [
    "headphones",
    "blender",
    "hotel",
    "restaurant",
    "phone case",
    "desk lamp",
    "backpack",
    "coffee machine",
    "e-reader",
]

TEAMS = ["marketing", "platform", "finance", "design", "support", "data", "mobile", "sales"]
PEOPLE = ["Amara", "Jonas", "Priya", "Mateo", "Lena", "Kwame", "Sofia", "Hiroshi", "Elif", "Noah", "Ines", "Tariq"]
TOPICS = [
    (
        "the delayed product launch",
        "the supplier shipped the wrong parts",
        "move the launch to the first week of next month",
        "confirm the new delivery date with the supplier",
    ),
    (
        "rising cloud costs",
        "storage costs doubled after old logs were never deleted",
        "delete logs older than ninety days",
        "set up an automatic cleanup job",
    ),
    (
        "customer churn",
        "most cancellations came from users who never finished onboarding",
        "add a guided setup tour for new users",
        "draft the onboarding emails",
    ),
    (
        "the office move",
        "the new building will not be ready until June",
        "extend the current lease by three months",
        "negotiate the lease extension",
    ),
    (
        "slow page loads",
        "the home page loads twelve large images",
        "compress the images and lazy-load the ones below the fold",
        "ship the image changes",
    ),
    (
        "the hiring plan",
        "two senior candidates declined offers because of salary",
        "raise the salary band for senior roles by eight percent",
        "update the job adverts",
    ),
    (
        "the quarterly budget",
        "travel spending was thirty percent over plan",
        "require approval for trips over five hundred dollars",
        "circulate the new travel policy",
    ),
    (
        "the mobile app rating",
        "the rating fell after a release that broke logins on older phones",
        "add older devices to the test matrix",
        "set up the extra test devices",
    ),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
DEADLINES = ["Friday", "the end of the month", "next Wednesday", "the next meeting", "the 15th"]

# Northwind Cloud: a made-up company with specific, checkable product facts the base model cannot know.
SUPPORT_SYSTEM = [
    "You are the support assistant for Northwind Cloud.",
    "You answer Northwind Cloud support tickets in the house format.",
    "Northwind Cloud customer support. Be precise and brief.",
]
OPENERS = ["", "Hi, ", "Hello, ", "Hi team, ", "Urgent: ", "Quick question: ", "Good morning. ", "Hey, "]
CLOSERS = [
    "",
    " Thanks!",
    " Any ideas?",
    " Please help.",
    " Thanks in advance.",
    " What should I do?",
    " This is blocking our team.",
    " Can you advise?",
]
CONTEXTS = [
    "",
    " This started this morning.",
    " We're on the Standard plan.",
    " It worked fine last week.",
    " Our account is acme-ops.",
    " We're on the Business plan.",
    " It happens on every attempt.",
    " Our region is eu-1.",
]

# product -> list of scenarios: (title, steps, two user phrasings). The last scenario of each product is held out.
SUPPORT: dict[str, list[tuple[str, list[str], list[str]]]] = {
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


def _dump(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _rec(instruction: str, output: str, input_text: str = "") -> dict[str, str]:
    return {"instruction": instruction, "input": input_text, "output": output}


def _fmt(x: float) -> str:
    text = f"{x:,.2f}".rstrip("0").rstrip(".")
    return text or "0"


def _geography(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for country, capital, continent, language, currency in COUNTRIES:
        rows.append(
            _rec(
                rng.choice(
                    [
                        f"What is the capital of {country}?",
                        f"Name the capital city of {country}.",
                        f"Which city is the capital of {country}?",
                    ]
                ),
                f"The capital of {country} is {capital}.",
            )
        )
        kind = rng.randrange(3)
        if kind == 0:
            rows.append(_rec(f"What currency is used in {country}?", f"{country} uses {currency}."))
        elif kind == 1:
            rows.append(_rec(f"Which continent is {country} in?", f"{country} is in {continent}."))
        else:
            rows.append(
                _rec(f"What language is spoken in {country}?", f"The official language of {country} is {language}.")
            )
    for _ in range(6):
        picks = rng.sample(COUNTRIES, 4)
        listed = ", ".join(p[0] for p in picks)
        answer = "\n".join(f"- {p[0]}: {p[1]}" for p in picks)
        rows.append(_rec("Give the capital of each country.", answer, listed))
    return rows


def _maths(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(12):
        speed, hours = rng.choice([40, 60, 80, 90, 120]), rng.choice([1.5, 2, 2.5, 3, 4])
        rows.append(
            _rec(
                f"A train travels at {speed} km/h for {_fmt(hours)} hours. How far does it go?",
                f"Distance = speed × time = {speed} × {_fmt(hours)} = {_fmt(speed * hours)} km.",
            )
        )
    for _ in range(10):
        price, pct = rng.choice([20, 45, 80, 120, 250, 60]), rng.choice([10, 15, 20, 25, 30])
        final = price * (100 - pct) / 100
        rows.append(
            _rec(
                f"A jacket costs ${price} and is {pct}% off. What is the sale price?",
                f"The discount is {pct}% of ${price} = ${_fmt(price * pct / 100)}, so the sale price is "
                f"${_fmt(final)}.",
            )
        )
    for _ in range(10):
        nums = [rng.randint(2, 99) for _ in range(rng.randint(3, 6))]
        mean = sum(nums) / len(nums)
        rows.append(
            _rec(
                "Calculate the average of these numbers.",
                f"The sum is {sum(nums)} and there are {len(nums)} numbers, so the average is {_fmt(mean)}.",
                ", ".join(map(str, nums)),
            )
        )
    for _ in range(8):
        a, b = rng.randint(12, 99), rng.randint(3, 19)
        rows.append(_rec(f"What is {a} times {b}?", f"{a} × {b} = {a * b}."))
    return rows


def _conversions(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(28):
        kind = rng.randrange(4)
        if kind == 0:
            km = rng.choice([3, 5, 10, 21.1, 42.2, 100, 250])
            rows.append(
                _rec(f"Convert {_fmt(km)} kilometres to miles.", f"{_fmt(km)} km is about {km * 0.621371:.1f} miles.")
            )
        elif kind == 1:
            c = rng.choice([-10, 0, 12, 20, 25, 37, 100])
            rows.append(
                _rec(
                    f"What is {c} °C in Fahrenheit?",
                    f"{c} °C = {_fmt(c * 9 / 5 + 32)} °F (multiply by 9/5, then add 32).",
                )
            )
        elif kind == 2:
            kg = rng.choice([1, 2.5, 5, 12, 70, 80])
            rows.append(_rec(f"How many pounds is {_fmt(kg)} kg?", f"{_fmt(kg)} kg is about {kg * 2.20462:.1f} lb."))
        else:
            minutes = rng.choice([90, 135, 200, 75, 48, 310])
            h, m = divmod(minutes, 60)
            rows.append(
                _rec(
                    f"Convert {minutes} minutes to hours and minutes.",
                    f"{minutes} minutes is {h} hour{'s' if h != 1 else ''} and {m} minutes.",
                )
            )
    return rows


def _classification(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(40):
        thing = rng.choice(REVIEW_THINGS)
        label = rng.choice(["Positive", "Negative", "Mixed"])
        if label == "Positive":
            parts = rng.sample(REVIEW_POS, 2)
            text = f"I bought the {thing} last month: {parts[0]} and {parts[1]}. Would recommend."
            why = "the reviewer praises it and recommends it"
        elif label == "Negative":
            parts = rng.sample(REVIEW_NEG, 2)
            text = f"Really disappointed with this {thing}. It {parts[0]}, and {parts[1]}."
            why = "the reviewer only reports problems"
        else:
            text = f"The {thing} is fine overall: {rng.choice(REVIEW_POS)}, but {rng.choice(REVIEW_NEG)}."
            why = "the review names both a strength and a problem"
        instruction = rng.choice(
            [
                "Classify the sentiment of this review as Positive, Negative or Mixed.",
                "Is this review positive, negative or mixed?",
                "What is the sentiment of this review?",
            ]
        )
        output = label if rng.random() < 0.5 else f"{label}: {why}."
        rows.append(_rec(instruction, output, text))
    return rows


def _lists(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for category, items in CATEGORIES.items():
        for n in sorted(rng.sample(range(3, min(6, len(items)) + 1), k=min(2, len(items) - 2))):
            picks = rng.sample(items, n)
            style = rng.randrange(2)
            body = "\n".join(f"{i}. {p}" for i, p in enumerate(picks, 1)) if style else ", ".join(picks) + "."
            rows.append(_rec(f"List {n} {category}.", body))
    for _ in range(12):
        words = rng.sample([w for items in CATEGORIES.values() for w in items if " " not in w], rng.randint(4, 7))
        rows.append(_rec("Sort these words alphabetically.", ", ".join(sorted(words, key=str.lower)), ", ".join(words)))
    for _ in range(8):
        sentence = rng.choice(SHORTEN)[0]
        rows.append(_rec("How many words are in this sentence?", f"It has {len(sentence.split())} words.", sentence))
    return rows


def _rewriting(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for informal, formal in INFORMAL_TO_FORMAL:
        rows.append(
            _rec(
                rng.choice(
                    [
                        "Rewrite this message in a formal tone.",
                        "Make this sentence more professional.",
                        "Rewrite formally.",
                    ]
                ),
                formal,
                informal,
            )
        )
    for long, short in SHORTEN:
        rows.append(
            _rec(
                rng.choice(
                    [
                        "Make this sentence more concise.",
                        "Shorten this sentence.",
                        "Rewrite this more briefly without losing meaning.",
                    ]
                ),
                short,
                long,
            )
        )
    for _informal, formal in rng.sample(INFORMAL_TO_FORMAL, 8):
        rows.append(_rec("Convert this sentence to upper case.", formal.upper(), formal))
    return rows


def _summaries(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(36):
        topic, finding, decision, action = rng.choice(TOPICS)
        team, day, deadline = rng.choice(TEAMS), rng.choice(DAYS), rng.choice(DEADLINES)
        a, b = rng.sample(PEOPLE, 2)
        notes = (
            f"The {team} team met on {day} to discuss {topic}. {a} reported that {finding}. "
            f"Several options were discussed, including doing nothing until next quarter. "
            f"In the end the team agreed to {decision}. {b} will {action} by {deadline}."
        )
        kind = rng.randrange(3)
        if kind == 0:
            rows.append(
                _rec(
                    "Summarise these meeting notes in one sentence.",
                    f"The {team} team agreed to {decision}, and {b} will {action} by {deadline}.",
                    notes,
                )
            )
        elif kind == 1:
            rows.append(
                _rec(
                    "What was decided in this meeting, and who owns the next step?",
                    f"Decision: {decision}. Owner: {b}, who will {action} by {deadline}.",
                    notes,
                )
            )
        else:
            rows.append(
                _rec(
                    "Write a short summary of these notes for someone who missed the meeting.",
                    f"{a} found that {finding}. The team decided to {decision}. Next step: {b} will "
                    f"{action} by {deadline}.",
                    notes,
                )
            )
    return rows


def _explanations(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for term, definition in GLOSSARY:
        instruction = rng.choice(
            [
                f"What is {term}?",
                f"Explain {term} in simple terms.",
                f"Define {term}.",
                f"Can you explain what {term} means?",
            ]
        )
        output = definition if rng.random() < 0.7 else definition.split(". ")[0].rstrip(".") + "."
        rows.append(_rec(instruction, output))
    for question, answer in TIPS:
        rows.append(_rec(question, answer))
    return rows


def _extraction(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    domains = ["example.com", "mail.example.org", "acme.test", "contoso.example"]
    months = ["January", "March", "April", "June", "September", "November"]
    for _ in range(14):
        name = rng.choice(PEOPLE)
        email = f"{name.lower()}.{rng.choice(['ops', 'hr', 'sales', 'it'])}@{rng.choice(domains)}"
        text = (
            f"Hi all, for questions about the {rng.choice(TEAMS)} rollout please write to {email} "
            f"rather than replying to this thread. — {name}"
        )
        rows.append(_rec("Extract the email address from this message.", email, text))
    for _ in range(12):
        day, month, year = rng.randint(1, 28), rng.choice(months), rng.choice([2023, 2024, 2025])
        name, city = rng.choice(PEOPLE), rng.choice(COUNTRIES)[1]
        text = f"{name} will present the results in {city} on {month} {day}, {year}, right after lunch."
        rows.append(
            _rec(
                "Extract the person, place and date from the sentence as JSON.",
                json.dumps({"person": name, "place": city, "date": f"{month} {day}, {year}"}, ensure_ascii=False),
                text,
            )
        )
    for _ in range(8):
        name, age, city = rng.choice(PEOPLE), rng.randint(21, 64), rng.choice(COUNTRIES)[1]
        rows.append(
            _rec(
                "Convert this description into a JSON object with name, age and city.",
                json.dumps({"name": name, "age": age, "city": city}, ensure_ascii=False),
                f"{name} is {age} years old and lives in {city}.",
            )
        )
    return rows


def make_sample(rng: random.Random) -> list[dict[str, str]]:
    """Instruction records across task types, shuffled; answers are computed, so they are right."""
    rows: list[dict[str, str]] = []
    for part in (
        _geography,
        _maths,
        _conversions,
        _classification,
        _lists,
        _rewriting,
        _summaries,
        _explanations,
        _extraction,
    ):
        rows.extend(part(rng))
    unique = list({json.dumps(r, sort_keys=True): r for r in rows}.values())
    rng.shuffle(unique)
    return unique


def make_text(rng: random.Random) -> list[dict[str, str]]:
    """Plain paragraphs: encyclopaedia-style entries, meeting minutes, reviews, product notes and logbook lines."""
    rows = []
    for country, capital, continent, language, currency in COUNTRIES:
        openers = [
            f"{country} is a country in {continent}.",
            f"Located in {continent}, {country} has {capital} as its capital.",
            f"{capital} is the capital of {country}, a country in {continent}.",
        ]
        rows.append(
            f"{rng.choice(openers)} Its official language is {language}, and people pay with {currency}. "
            f"Visitors often start in {capital}, where museums, markets and old neighbourhoods sit close "
            "together."
        )
    for term, definition in GLOSSARY:
        rows.append(f"{definition} The idea of {term} comes up often in textbooks and everyday conversation.")
    for _ in range(30):
        topic, finding, decision, action = rng.choice(TOPICS)
        a, b = rng.sample(PEOPLE, 2)
        rows.append(
            f"Minutes, {rng.choice(DAYS)}: the {rng.choice(TEAMS)} team reviewed {topic}. {a} explained that "
            f"{finding}. The team agreed to {decision}, and {b} will {action} by {rng.choice(DEADLINES)}."
        )
    for _ in range(30):
        thing = rng.choice(REVIEW_THINGS)
        good, bad = rng.choice(REVIEW_POS), rng.choice(REVIEW_NEG)
        stars = rng.randint(1, 5)
        rows.append(
            f"{stars} out of 5 stars for the {thing}. On the plus side, {good}. "
            f"{'Sadly' if stars < 3 else 'That said'}, {bad}."
        )
    for product, scenarios in SUPPORT.items():
        for title, steps, _ in scenarios[:3]:
            rows.append(f"Northwind Cloud {product} note — {title}. " + " ".join(steps))
    for _ in range(25):
        hour, temp, wind = rng.randint(5, 21), rng.randint(-5, 31), rng.randint(0, 60)
        sky = rng.choice(
            ["clear skies", "light rain", "low cloud", "fog in the valleys", "scattered showers", "bright sunshine"]
        )
        rows.append(
            f"Field log, {hour:02d}:00. Temperature {temp} °C, wind {wind} km/h, {sky}. "
            + rng.choice(
                [
                    "Trail conditions good.",
                    "Paths muddy near the river.",
                    "Visibility under 1 km.",
                    "Two groups passed heading north.",
                    "Birds active around the feeder.",
                ]
            )
        )
    for category, items in CATEGORIES.items():
        picks = rng.sample(items, min(len(items), rng.randint(3, 5)))
        rows.append(f"Examples of {category} include {', '.join(picks[:-1])} and {picks[-1]}.")
    unique = list(dict.fromkeys(rows))
    rng.shuffle(unique)
    return [{"text": t} for t in unique]


def _support_user(rng: random.Random, core: str) -> str:
    text = rng.choice(OPENERS) + core
    text = text[0].upper() + text[1:]
    return text + rng.choice(CONTEXTS) + rng.choice(CLOSERS)


def _support_row(rng: random.Random, ticket: int, title: str, steps: list[str], user: str) -> dict[str, Any]:
    answer = "\n".join(
        [f"Ticket NW-{ticket}: {title}", "Fix:", *(f"{i}. {s}" for i, s in enumerate(steps, 1)), SIGNOFF]
    )
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(SUPPORT_SYSTEM)})
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def make_support(rng: random.Random, train_rows: int = 120, eval_rows: int = 20) -> tuple[list, list]:
    """Support tickets; the last scenario of every product is held out, so eval problems never appear in training."""
    tickets = rng.sample(range(1000, 10000), train_rows + eval_rows)
    train_scen = [s for scenarios in SUPPORT.values() for s in scenarios[:-1]]
    eval_scen = [scenarios[-1] for scenarios in SUPPORT.values()]

    def rows_for(scenarios: list, count: int) -> list[dict[str, Any]]:
        users: list[tuple[int, str]] = []
        seen: set[str] = set()
        i = 0
        while len(users) < count:
            idx = i % len(scenarios)
            user = _support_user(rng, scenarios[idx][2][(i // len(scenarios)) % 2])
            i += 1
            if user not in seen:
                seen.add(user)
                users.append((idx, user))
        rows = [_support_row(rng, tickets.pop(), scenarios[idx][0], scenarios[idx][1], user) for idx, user in users]
        rng.shuffle(rows)
        return rows

    return rows_for(train_scen, train_rows), rows_for(eval_scen, eval_rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_DATA_DIR, help="folder to write into (default: data/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    sample = make_sample(rng)
    text = make_text(rng)
    support_train, support_eval = make_support(rng)
    for name, rows in [
        ("sample.jsonl", sample),
        ("text.jsonl", text),
        ("support_train.jsonl", support_train),
        ("support_eval.jsonl", support_eval),
    ]:
        _dump(args.out / name, rows)
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
