demo:
	python3 dev.py demo

test:
	python3 dev.py test

lint:
	python3 dev.py lint

.PHONY: demo test lint
