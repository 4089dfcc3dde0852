demo:
	python3 dev.py demo

test:
	python3 dev.py test

.PHONY: demo test
