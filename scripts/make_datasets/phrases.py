"""Phrase tables: rewrites, categories, tips, review fragments and meeting-note parts."""

from __future__ import annotations

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
